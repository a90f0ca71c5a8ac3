"""What evaluate() measures: scores against the baselines, move accuracy against a perfect solver,
how long the agent keeps the solver's value, and the pictures.

The solver (`bitbully`, AGPL-3.0, the optional `eval` extra) is imported here only, lazily:
without it the solver metrics are left out and training and serving are unaffected.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from apps.game_agent import agents
from apps.game_agent.games import ConnectFour


def load_solver():
    """(BitBully solver, Board class), or None when the `eval` extra is not installed."""
    try:
        from bitbully import BitBully, Board
    except ImportError:
        return None
    return BitBully(), Board


def solver_scores(solver, history: str) -> dict[int, int]:
    """Solver score of every legal move (0-based column): > 0 wins, 0 draws, < 0 loses, for the mover."""
    engine, board_class = solver
    return engine.score_all_moves(board_class.from_moves([int(c) - 1 for c in history]))


def keeps_value(scores: dict[int, int], move: int) -> bool:
    """Whether `move` keeps the position's game-theoretic value (win, draw or loss)."""
    return np.sign(scores[move]) == max(np.sign(v) for v in scores.values())


def move_accuracy(solver, histories: Sequence[str], moves_by_agent: dict[str, Sequence[int]]) -> dict[str, float]:
    """Share of positions where each agent's move keeps the solver's value."""
    labels = [solver_scores(solver, h) for h in histories]
    return {name: float(np.mean([keeps_value(s, m) for s, m in zip(labels, moves)]))
            for name, moves in moves_by_agent.items()}


def games_against_solver(game: ConnectFour, solver, agent: agents.Agent, games: int, seed: int) -> dict[str, float]:
    """The agent against the perfect player (alternating who starts): the moves it plays before its
    first one that loses the solver's value, and the share of games where it never does."""
    rand = random.Random(seed)
    kept, clean = [], 0
    for g in range(games):
        state, history, mistakes, count = game.initial(), "", 0, 0
        agent_first = g % 2 == 0
        while game.outcome(state) is None:
            scores = solver_scores(solver, history)
            if (state.ply % 2 == 0) == agent_first:
                move = agent.choose([state])[0]
                if not keeps_value(scores, move):
                    mistakes += 1
                    break
                count += 1
            else:
                best = max(scores.values())
                move = rand.choice([c for c, v in scores.items() if v == best])
            state, history = game.play(state, move), history + str(move + 1)
        kept.append(count)
        clean += mistakes == 0
    return {"solver_kept_moves": float(np.mean(kept)), "solver_clean_games": clean / max(games, 1)}


# ------------------------------------------------------------------------------------------------
# Pictures.

def learning_curve_png(history: dict, path: str | Path, final: dict | None = None, title: str = "") -> Path:
    """Score of the network (export's lookahead, no search) against each baseline by iteration."""
    from core.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    iterations = history.get("iteration", [])
    for key in sorted(k for k in history if k.startswith("score_vs_")):
        ax.plot(iterations, history[key], marker="o", label=f"network vs {key.removeprefix('score_vs_')}")
    for key, value in sorted((final or {}).items()):
        if key.startswith("score_vs_") and iterations:
            ax.scatter([iterations[-1] + 0.3], [value], marker="*", s=90,
                       label=f"with search vs {key.removeprefix('score_vs_')}")
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="even (0.5)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("self-play iteration")
    ax.set_ylabel("score (win 1, draw 0.5)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path, dpi=110)


def policy_boards_png(game: ConnectFour, states: Sequence, histories: Sequence[str], policies: np.ndarray,
                      values: np.ndarray, moves: Sequence[int], path: str | Path) -> Path:
    """Positions with the network's policy drawn as bars over the columns and its chosen move."""
    from core.plots import _pyplot, _save

    plt = _pyplot()
    n = len(states)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.6), squeeze=False)
    for ax, state, history, policy, value, move in zip(axes[0], states, histories, policies, values, moves):
        grid = game.grid(state)
        ax.add_patch(plt.Rectangle((-0.5, -0.5), 7, 6, color="#1f4e9c"))
        for r in range(6):
            for c in range(7):
                colour = ("white", "#d62728", "#ffd92f")[grid[r, c]]
                ax.add_patch(plt.Circle((c, 5 - r), 0.38, color=colour))
        ax.bar(range(7), policy * 3, bottom=5.6, color="#2ca02c", width=0.7)
        for c, p in enumerate(policy):
            if p >= 0.05:
                ax.text(c, 5.65 + p * 3, f"{p:.2f}", ha="center", fontsize=6)
        if move > 0:
            ax.annotate("", xy=(move - 1, 5.5), xytext=(move - 1, 9.2),
                        arrowprops={"arrowstyle": "->", "color": "black"})
        ax.set_xlim(-0.6, 6.6)
        ax.set_ylim(-0.6, 9.4)
        ax.set_aspect("equal")
        ax.set_xticks(range(7), [str(c + 1) for c in range(7)], fontsize=7)
        ax.set_yticks([])
        side = "red" if state.ply % 2 == 0 else "yellow"
        ax.set_title(f'"{history or "(start)"}": {side} to move\nvalue {value:+.2f}, plays {move}', fontsize=8)
    fig.suptitle("network policy (bars) over held-out positions; arrow: the export's move", fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi=110)
