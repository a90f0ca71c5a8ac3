"""Game agent settings and presets (epochs = self-play iterations; steps_per_epoch = training steps
per iteration, 0: two passes over the positions the iteration added)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from core.config import BaseConfig, at_least, between, positive


@dataclasses.dataclass
class Config(BaseConfig):
    game: str = "connect4"  # the game learned (games.GAMES)
    # Network.
    filters: int = positive(48)  # channels of the residual tower
    blocks: int = positive(3)  # residual blocks
    value_hidden: int = positive(64)  # width of the value head's hidden layer
    weight_decay: float = at_least(0, 1e-4)  # L2 on every kernel
    # Self-play.
    games_per_iteration: int = positive(64)  # games played in parallel each iteration
    simulations: int = positive(48)  # PUCT simulations per self-play move
    c_puct: float = at_least(0, 1.5)  # exploration weight of the priors in PUCT
    dirichlet_alpha: float = at_least(0, 1.0)  # root noise concentration in self-play (0: no noise)
    noise_fraction: float = between(0, 1, 0.25)  # share of the root priors replaced by the noise
    temperature_plies: int = at_least(0, 8)  # opening plies whose moves are drawn in proportion to the visits
    value_target_search: float = between(0, 1, 0.5)  # share of the search's root value in the value target
    buffer_size: int = positive(30000)  # replay buffer capacity in positions (mirrors included)
    # Evaluation.
    eval_games: int = positive(40)  # games against each baseline, alternating who starts
    eval_simulations: int = positive(64)  # simulations per move of the evaluated agent and of pure MCTS
    negamax_depth: int = positive(4)  # depth of the negamax baseline
    opening_plies: int = at_least(0, 2)  # random opening moves shared by each pair of evaluation games
    ablation: bool = False  # also score pure MCTS (random rollouts) at eval_simulations
    curve_games: int = positive(20)  # games per baseline after each iteration, for the learning curve
    test_positions: int = positive(200)  # held-out positions from games between the baselines
    solver_games: int = positive(10)  # games against the solver (needs the `eval` extra: bitbully)
    policy_weight: float = at_least(0, 1.0)  # weight of the prior beside the 1-ply value in the export's lookahead

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"epochs": 3, "filters": 16, "blocks": 1, "value_hidden": 32, "games_per_iteration": 24,
                  "simulations": 12, "batch_size": 64, "learning_rate": 3e-3, "eval_games": 20,
                  "eval_simulations": 16, "negamax_depth": 1, "curve_games": 10, "test_positions": 40,
                  "solver_games": 2, "time_budget_s": 40, "verbose": 0},
        "demo": {"epochs": 30, "filters": 32, "blocks": 2, "games_per_iteration": 96, "simulations": 16,
                 "batch_size": 128, "learning_rate": 2e-3, "eval_games": 30, "eval_simulations": 48,
                 "negamax_depth": 2, "curve_games": 16, "test_positions": 120, "solver_games": 2,
                 "time_budget_s": 45},
        "full": {"epochs": 300, "filters": 64, "blocks": 5, "games_per_iteration": 128, "simulations": 200,
                 "batch_size": 256, "learning_rate": 1e-3, "buffer_size": 200000, "eval_games": 200,
                 "eval_simulations": 200, "ablation": True, "test_positions": 1000, "solver_games": 50},
    }
