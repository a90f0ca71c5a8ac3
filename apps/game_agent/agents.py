"""Players: the baselines (random, greedy, negamax, pure MCTS), the network with search, and the
network with the export's lookahead. Every agent chooses for a batch of games at once."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

import numpy as np

from apps.game_agent import mcts
from apps.game_agent.games import CENTRE_ORDER, ConnectFour, Game

WIN_SCORE = 1_000_000.0


class Agent:
    name = "agent"

    def choose(self, states: Sequence) -> list[int]:
        raise NotImplementedError


class RandomAgent(Agent):
    name = "random"

    def __init__(self, game: Game, seed: int = 0):
        self.game, self.rand = game, random.Random(seed)

    def choose(self, states):
        return [self.rand.choice(self.game.legal(s)) for s in states]


class GreedyAgent(Agent):
    """One ply: wins when it can, else blocks the opponent's immediate win, else plays at random."""

    name = "greedy"

    def __init__(self, game: ConnectFour, seed: int = 0):
        self.game, self.rand = game, random.Random(seed)

    def choose(self, states):
        moves = []
        for s in states:
            options = self.game.winning_actions(s) or self.game.threats(s) or self.game.legal(s)
            moves.append(self.rand.choice(options))
        return moves


class NegamaxAgent(Agent):
    """Depth-N alpha-beta negamax over the window-count heuristic; equal best moves drawn at random."""

    def __init__(self, game: ConnectFour, depth: int = 4, seed: int = 0):
        self.game, self.depth, self.rand = game, depth, random.Random(seed)
        self.name = f"negamax{depth}"

    def value(self, state, depth: int, alpha: float, beta: float) -> float:
        game = self.game
        if state.result is not None:  # the opponent just won (or a draw); sooner losses are worse
            return state.result * (WIN_SCORE + depth)
        if depth == 0:
            return game.heuristic(state)
        best = -np.inf
        for c in CENTRE_ORDER:
            if c in game.legal(state):
                best = max(best, -self.value(game.play(state, c), depth - 1, -beta, -alpha))
                alpha = max(alpha, best)
                if alpha >= beta:
                    break
        return best

    def scores(self, state) -> dict[int, float]:
        """Each legal move's exact depth-limited value (full window, so ties are real ties)."""
        return {c: -self.value(self.game.play(state, c), self.depth - 1, -np.inf, np.inf)
                for c in self.game.legal(state)}

    def choose(self, states):
        moves = []
        for s in states:
            scores = self.scores(s)
            best = max(scores.values())
            moves.append(self.rand.choice([c for c, v in scores.items() if v == best]))
        return moves


class SearchAgent(Agent):
    """PUCT search with a fixed number of simulations per move; plays the most visited move."""

    def __init__(self, game: Game, evaluate: mcts.Evaluator, simulations: int, c_puct: float = 1.5,
                 name: str = "search"):
        self.game, self.evaluate, self.simulations, self.c_puct, self.name = \
            game, evaluate, simulations, c_puct, name

    def choose(self, states):
        counts, _ = mcts.search(self.game, list(states), self.evaluate, self.simulations, c_puct=self.c_puct)
        return [int(np.argmax(c)) for c in counts]


class PolicyAgent(Agent):
    """The network's policy alone: its most likely legal move, no search and no lookahead."""

    name = "policy"

    def __init__(self, game: Game, model):
        self.evaluate = mcts.network_evaluator(game, model)

    def choose(self, states):
        priors, _ = self.evaluate(list(states))
        return [int(np.argmax(p)) for p in priors]


def pure_mcts(game: Game, simulations: int, seed: int = 0) -> SearchAgent:
    """The AlphaZero papers' ablation: the same search, random rollouts instead of the network."""
    return SearchAgent(game, mcts.rollout_evaluator(game, seed), simulations, name=f"pure_mcts{simulations}")


# The export's lookahead, as bonuses over the network's 1-ply value (serving.py computes the same).
WIN_BONUS, BLOCK_BONUS, GIVE_AWAY_PENALTY = 40.0, 20.0, 5.0


class LookaheadAgent(Agent):
    """The network without search, as the export plays: win now, else block, else the move whose
    position the network values most (+ policy_weight x its prior), never under an opponent's win."""

    name = "network"

    def __init__(self, game: ConnectFour, model, policy_weight: float = 1.0):
        self.game, self.policy_weight = game, policy_weight
        self.evaluate = mcts.network_evaluator(game, model)

    def analyse(self, states) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scores [B, 7] with -inf for illegal moves, policy [B, 7], value [B]) of non-final states."""
        game = self.game
        policy, value = self.evaluate(states)
        children = [game.play(s, c) for s in states for c in range(game.num_actions) if c in game.legal(s)]
        _, child_values = self.evaluate(children) if children else (None, [])
        scores = np.full((len(states), game.num_actions), -np.inf, np.float32)
        k = 0
        for row, s, p in zip(scores, states, policy):
            threats = set(game.threats(s))
            for c in game.legal(s):
                child = children[k]
                q = 0.0 if child.result == 0.0 else -float(child_values[k])
                k += 1
                row[c] = np.float32(q) + np.float32(self.policy_weight) * p[c]
                if child.result == -1.0:
                    row[c] += WIN_BONUS
                elif c in threats:
                    row[c] += BLOCK_BONUS
                if child.result is None and c in game.winning_actions(child):  # they win on top of it
                    row[c] -= GIVE_AWAY_PENALTY
        return scores, policy, value

    def choose(self, states):
        scores, _, _ = self.analyse(list(states))
        return [int(np.argmax(s)) for s in scores]


def play_match(game: Game, agent: Agent, opponent: Agent, games: int, *, opening_plies: int = 2,
               seed: int = 0) -> dict:
    """`games` games (all at once) of `agent` against `opponent`, alternating who moves first.

    Each pair of games shares a random opening of `opening_plies` moves (played for both sides) so
    that deterministic players still meet different positions. Score: win 1, draw 0.5, loss 0.
    """
    rand = random.Random(seed)
    states, agent_first = [], []
    for g in range(games):
        if g % 2 == 0:
            state = game.initial()
            for _ in range(opening_plies):
                state = game.play(state, rand.choice(game.legal(state)))
        states.append(state)
        agent_first.append(g % 2 == 0)
    seconds, moves = 0.0, 0
    while True:
        live = [g for g, s in enumerate(states) if game.outcome(s) is None]
        if not live:
            break
        for player, is_agent in ((agent, True), (opponent, False)):
            turn = [g for g in live if game.outcome(states[g]) is None
                    and (states[g].ply % 2 == 0) == (agent_first[g] == is_agent)]
            if not turn:
                continue
            start = time.perf_counter()
            chosen = player.choose([states[g] for g in turn])
            if is_agent:
                seconds += time.perf_counter() - start
                moves += len(turn)
            for g, action in zip(turn, chosen):
                states[g] = game.play(states[g], action)
    wins = draws = 0
    for s, first in zip(states, agent_first):
        # The side to move at the end lost (result -1) or drew; it is the agent when parities match.
        agent_to_move = (s.ply % 2 == 0) == first
        if s.result == 0.0:
            draws += 1
        elif not agent_to_move:
            wins += 1
    return {"score": (wins + 0.5 * draws) / max(games, 1), "wins": wins, "draws": draws,
            "losses": games - wins - draws, "moves_per_s": moves / seconds if seconds else 0.0}
