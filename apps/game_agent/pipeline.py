"""Game agent pipeline: self-play with search -> policy/value network -> scores against baselines and
a solver -> an endpoint that takes a move history ("4453") and answers the move to play."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from apps.game_agent import agents, data, evaluation, mcts, selfplay, serving
from apps.game_agent import model as model_lib
from apps.game_agent.config import Config
from apps.game_agent.games import ConnectFour, make_game
from core.pipeline import Phase
from core.pipeline import Pipeline as BasePipeline

CURVE_FILE, POLICY_FILE = "learning_curve.png", "policy_over_board.png"


class Pipeline(BasePipeline):
    """Learns Connect Four by self-play (AlphaZero-style) and serves position in, move out.

    Example:
        >>> p = Pipeline(Config.preset("smoke"), workdir="runs/c4")
        >>> p.fit(); p.evaluate()["score_vs_random"]
        >>> p.predict(["4453"])  # [{"move": 3, "value": 0.12, "policy": {...}, "board": "..."}]
    """

    name = "game_agent"
    config_class = Config
    monitor = "score_vs_greedy"
    monitor_mode = "max"

    @property
    def game(self) -> ConnectFour:
        return make_game(self.config.game)

    def load_data(self):
        splits = data.load(self.config)
        self.state = {"game": self.config.game}
        return splits

    def make_model(self):
        game = self.game
        return model_lib.build_model(self.config, game.rows, game.cols, game.num_actions)

    def compile_model(self, model):
        selfplay.compile_model(model, self.learning_rate)

    def phases(self):
        return [Phase("train", run=self._self_play)]

    def _self_play(self, model, splits, workdir):
        result = selfplay.train(model, self.game, self.config, workdir, self.global_batch_size)
        self._buffer, self._seen = result.pop("buffer"), result.pop("seen_keys")
        evaluation.learning_curve_png(result["history"], self.workdir / CURVE_FILE,
                                      title=f"{self.name}: learning curve")
        return result

    def training_data(self, splits):
        """The replay buffer as (planes, {policy, value}) batches (what the last iteration trained on)."""
        buffer = getattr(self, "_buffer", None)
        if buffer is None:
            state_dir = self.workdir / "selfplay"
            progress = selfplay.load_progress(state_dir)
            if progress is None:
                raise FileNotFoundError(f"No replay buffer in {state_dir}: the game agent's training data comes "
                                        f"from self-play; run fit() first.")
            buffer = selfplay.Buffer(self.config.buffer_size)
            buffer.load(state_dir / progress["buffer"])
        return buffer.dataset(self.global_batch_size), None

    def seen_keys(self) -> set[int]:
        """Keys of every position self-play stored (mirrors included), to keep the test held out."""
        if getattr(self, "_seen", None) is not None:
            return self._seen
        progress = selfplay.load_progress(self.workdir / "selfplay")
        return set(progress["seen_keys"]) if progress else set()

    def compute_metrics(self, test):
        cfg, game, model = self.config, self.game, self.require_model()
        histories = [h.decode() for h in test.as_numpy_iterator()]
        seen = self.seen_keys()
        held_out = [h for h in histories if game.key(game.from_moves(h)) not in seen]
        evaluate = mcts.network_evaluator(game, model)
        search = agents.SearchAgent(game, evaluate, cfg.eval_simulations, cfg.c_puct, name="search")
        network = agents.LookaheadAgent(game, model, cfg.policy_weight)
        policy = agents.PolicyAgent(game, model)  # what the network alone learned
        metrics: dict[str, float] = {"eval_games": cfg.eval_games, "eval_simulations": cfg.eval_simulations}
        opponents = [agents.RandomAgent(game, cfg.seed), agents.GreedyAgent(game, cfg.seed),
                     agents.NegamaxAgent(game, cfg.negamax_depth, cfg.seed)]
        for i, opponent in enumerate(opponents):
            seed = cfg.seed + 104729 * (i + 1)  # the same openings for every agent against this opponent
            match = agents.play_match(game, search, opponent, cfg.eval_games, opening_plies=cfg.opening_plies,
                                      seed=seed)
            metrics[f"score_vs_{opponent.name}"] = match["score"]
            metrics[f"search_moves_per_s_vs_{opponent.name}"] = match["moves_per_s"]
            for label, player in (("network", network), ("policy", policy)):
                metrics[f"{label}_score_vs_{opponent.name}"] = agents.play_match(
                    game, player, opponent, cfg.eval_games, opening_plies=cfg.opening_plies, seed=seed)["score"]
            if cfg.ablation:
                metrics[f"pure_mcts_score_vs_{opponent.name}"] = agents.play_match(
                    game, agents.pure_mcts(game, cfg.eval_simulations, cfg.seed), opponent, cfg.eval_games,
                    opening_plies=cfg.opening_plies, seed=seed)["score"]
        metrics["held_out_positions"] = len(held_out)
        solver = evaluation.load_solver()
        if solver is not None and held_out:
            states = [game.from_moves(h) for h in held_out]
            priors, _ = evaluate(states)
            start = time.perf_counter()
            searched = search.choose(states)
            metrics["search_moves_per_s"] = len(states) / (time.perf_counter() - start)
            metrics.update({f"{k}_accuracy": v for k, v in evaluation.move_accuracy(solver, held_out, {
                "raw": [int(np.argmax(p)) for p in priors], "network": network.choose(states),
                "search": searched}).items()})
            metrics.update(evaluation.games_against_solver(game, solver, search, cfg.solver_games, cfg.seed))
        by_length = sorted(histories, key=len)  # from the opening to the late middle game
        self._draw_positions([by_length[int(q * (len(by_length) - 1))] for q in (0.1, 0.4, 0.7, 0.95)])
        fit = {}
        metrics_path = self.workdir / "metrics.json"
        if metrics_path.exists():
            fit = json.loads(metrics_path.read_text()).get("fit", {})
        if fit.get("history"):
            evaluation.learning_curve_png(fit["history"], self.workdir / CURVE_FILE,
                                          final={k: v for k, v in metrics.items() if k.startswith("score_vs_")},
                                          title=f"{self.name}: network (lines) and search (stars) scores")
        return metrics

    def _draw_positions(self, histories: list[str]) -> None:
        outputs = self.endpoints["serving_default"](**self.encode_request(histories))
        game = self.game
        evaluation.policy_boards_png(game, [game.from_moves(h) for h in histories], histories,
                                     outputs["policy"].numpy(), outputs["value"].numpy(),
                                     outputs["move"].numpy(), self.workdir / POLICY_FILE)

    def make_endpoints(self):
        return serving.make_endpoints(self.require_model(), self.config.policy_weight)

    def encode_request(self, raw_inputs: Sequence[Any]):
        moves = []
        for i, item in enumerate(raw_inputs):
            if isinstance(item, bytes):
                item = item.decode("utf-8", errors="replace")
            if isinstance(item, int):
                item = str(item)
            if not isinstance(item, str):
                raise ValueError(f"A position is a move history string such as '4453' (columns 1-7). "
                                 f"Received: input {i} = {item!r}")
            moves.append(item.strip())
        return {"moves": tf.constant(moves, tf.string, shape=[len(moves)])}

    def decode_response(self, outputs: Mapping[str, np.ndarray]):
        return [{"move": int(move), "value": round(float(value), 4),
                 "policy": {str(c + 1): round(float(p), 4) for c, p in enumerate(policy)},
                 "board": board.decode()}
                for move, value, policy, board in zip(outputs["move"], outputs["value"], outputs["policy"],
                                                      outputs["board"])]

    def sample_inputs(self, n: int = 4):
        return [h.decode() for h in self.datasets().test.take(n).as_numpy_iterator()]

    def example_requests(self):
        raw = self.sample_inputs(4)
        game = self.game
        return {"serving_default": self.encode_request(raw),
                "predict_board": {"board": tf.constant(np.stack([game.grid(game.from_moves(h)) for h in raw]),
                                                       tf.int32)}}
