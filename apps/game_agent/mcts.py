"""PUCT Monte Carlo tree search over many games at once.

Each simulation walks one path down every game's tree in Python, then evaluates all the new leaves
in a single call (a network over a batch, or random rollouts for pure MCTS), so the network runs
once per simulation step for every game together instead of once per leaf. Wins and losses found at
the leaves are proved up the tree (MCTS-Solver, Winands et al. 2008): a proved move's value is exact,
and the root never plays a move proved lost while another is not.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import numpy as np

from apps.game_agent.games import Game

# evaluate(states) -> (priors [B, num_actions] over all actions, values [B] for the side to move)
Evaluator = Callable[[Sequence], tuple[np.ndarray, np.ndarray]]


class Node:
    __slots__ = ("state", "actions", "prior", "visits", "value_sum", "children", "expanded", "known", "solved")

    def __init__(self, state):
        self.state = state
        self.expanded = False
        self.known: float | bool | None = None  # exact value without the network; False: not known
        self.children: list[Node | None] = []

    def expand(self, actions: list[int], priors: np.ndarray) -> None:
        self.actions = actions
        p = priors[actions].astype(np.float64)
        self.prior = p / p.sum() if p.sum() > 0 else np.full(len(actions), 1.0 / len(actions))
        self.visits = np.zeros(len(actions))
        self.value_sum = np.zeros(len(actions))
        self.children = [None] * len(actions)
        self.solved = np.full(len(actions), np.nan)  # +1 / -1 where a child is proved lost / won; NaN: unproved
        self.expanded = True


def search(game: Game, states: Sequence, evaluate: Evaluator, simulations: int, *, c_puct: float = 1.5,
           dirichlet_alpha: float = 0.0, noise_fraction: float = 0.25,
           rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Visit counts [B, num_actions] and searched root values [B] (the mean of the simulations' values, for
    the side to move) after `simulations` per game (non-terminal roots).

    With dirichlet_alpha > 0 the root priors are mixed with Dirichlet noise (self-play exploration).
    """
    rng = rng or np.random.default_rng()

    def exact_value(node: Node) -> float | None:
        """The result of a finished game, +1 where the side to move wins at once, -1 where it cannot
        win at once and must block two columns (found without the network, so that a few simulations
        never miss a one-move win or a needed block), or a value proved by the children below."""
        outcome = game.outcome(node.state)
        if outcome is not None:
            return outcome
        if node.known is None:
            node.known = 1.0 if game.winning_actions(node.state) else (
                -1.0 if len(game.threats(node.state)) > 1 else False)
        return None if node.known is False else node.known

    def prove(node: Node, i: int) -> None:
        """Won and lost proved upwards: one lost child wins the node, all children won lose it. (Draws are
        not: against a fallible opponent a proved draw is worth less than a line the network likes.)"""
        value = exact_value(node.children[i])
        if value not in (-1.0, 1.0) or exact_value(node) is not None:
            return
        node.solved[i] = -value
        if value == -1.0:
            node.known = 1.0
        elif (node.solved == -1.0).all():
            node.known = -1.0

    roots = [Node(s) for s in states]
    priors, values = evaluate(states) if states else (np.zeros((0, game.num_actions)), np.zeros(0))
    for root, p in zip(roots, priors):
        root.expand(game.legal(root.state), p)
        if dirichlet_alpha > 0:
            noise = rng.dirichlet([dirichlet_alpha] * len(root.actions))
            root.prior = (1 - noise_fraction) * root.prior + noise_fraction * noise
    for _ in range(simulations - 1):
        paths, leaves, pending = [], [], []
        for root in roots:
            node, path = root, []
            while node.expanded and (node is root or exact_value(node) is None):
                total = node.visits.sum()
                q = np.divide(node.value_sum, node.visits, out=np.zeros_like(node.value_sum),
                              where=node.visits > 0)
                q = np.where(np.isnan(node.solved), q, node.solved)
                i = int(np.argmax(q + c_puct * node.prior * math.sqrt(total + 1) / (1 + node.visits)))
                path.append((node, i))
                child = node.children[i]
                if child is None:
                    child = node.children[i] = Node(game.play(node.state, node.actions[i]))
                node = child
            paths.append(path)
            leaves.append(node)
            if exact_value(node) is None:
                pending.append(node)
        if pending:
            p, v = evaluate([n.state for n in pending])
            leaf_values = {}
            for node, pi, value in zip(pending, p, v):
                node.expand(game.legal(node.state), pi)
                leaf_values[id(node)] = float(value)
        for path, leaf in zip(paths, leaves):
            value = exact_value(leaf)
            value = value if value is not None else leaf_values[id(leaf)]
            for node, i in reversed(path):
                value = -value  # the parent's view of its child
                node.visits[i] += 1
                node.value_sum[i] += value
                prove(node, i)
    counts = np.zeros((len(roots), game.num_actions), np.float32)
    searched = np.array(values, np.float32)
    for b, (row, root) in enumerate(zip(counts, roots)):
        if root.visits.any():
            row[root.actions] = root.visits
            searched[b] = root.value_sum.sum() / root.visits.sum()
            solved = np.nan_to_num(root.solved, nan=0.0)  # an unproved move counts as even
            if solved.max() == 1.0 or solved.min() == -1.0 < solved.max():  # a proved win, or losses to avoid
                row[root.actions] = np.where(solved == solved.max(), np.maximum(root.visits, 1.0), 0.0)
                searched[b] = 1.0 if solved.max() == 1.0 else searched[b]
        else:  # one simulation: the network's priors and value are all the search knows
            row[root.actions] = root.prior
    return counts, searched


def rollout_evaluator(game: Game, seed: int = 0) -> Evaluator:
    """Pure MCTS: uniform priors and the result of one random game to the end from each leaf."""
    rand = random.Random(seed)

    def evaluate(states):
        priors = np.ones((len(states), game.num_actions), np.float32)
        values = np.zeros(len(states), np.float32)
        for i, start in enumerate(states):
            state, sign = start, 1.0
            while game.outcome(state) is None:
                state = game.play(state, rand.choice(game.legal(state)))
                sign = -sign
            values[i] = sign * game.outcome(state)
        return priors, values

    return evaluate


def network_evaluator(game: Game, model) -> Evaluator:
    """Priors (softmax over legal actions) and values from a policy/value network, one call per batch."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, game.rows, game.cols, 2], tf.float32)], autograph=False)
    def run(planes):
        out = model(planes, training=False)
        return out["policy"], out["value"]

    run = run.get_concrete_function()  # skips tf.function's argument matching on every call

    def evaluate(states):
        logits, values = run(tf.constant(game.planes(states)))
        logits = logits.numpy()
        legal = np.full_like(logits, -np.inf)
        for row, s in zip(legal, states):
            row[game.legal(s) or slice(None)] = 0.0  # a finished game's priors are never used
        logits = logits + legal
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True), values.numpy()

    return evaluate
