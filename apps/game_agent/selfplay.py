"""AlphaZero's loop: self-play games with search fill a replay buffer, the network trains on it.

Each iteration plays `games_per_iteration` games at once (one network call per simulation step
for all of them), stores (planes, visit-count policy, value target: the game's result mixed with the
search's root value) for every move and its left-right mirror, trains `steps_per_epoch` batches on the
buffer, then plays quick games against random and greedy for the learning curve. The network (with its
optimizer state), buffer, iteration and history are saved after every iteration, progress.json last: an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from apps.game_agent import agents, mcts
from apps.game_agent.games import Game

PROGRESS_FILE = "progress.json"


def self_play(game: Game, evaluate: mcts.Evaluator, cfg, rng: np.random.Generator):
    """(planes [M, r, c, 2], policies [M, A], results [M], position keys) of `games_per_iteration` games."""
    states = [game.initial()] * cfg.games_per_iteration
    records: list[list] = [[] for _ in states]
    while True:
        live = [g for g, s in enumerate(states) if game.outcome(s) is None]
        if not live:
            break
        counts, searched = mcts.search(game, [states[g] for g in live], evaluate, cfg.simulations,
                                       c_puct=cfg.c_puct, dirichlet_alpha=cfg.dirichlet_alpha,
                                       noise_fraction=cfg.noise_fraction, rng=rng)
        for g, visits, q in zip(live, counts, searched):
            policy = visits / visits.sum()
            records[g].append((states[g], policy, float(q)))
            if states[g].ply < cfg.temperature_plies:
                action = int(rng.choice(len(policy), p=policy))
            else:
                action = int(np.argmax(visits))
            states[g] = game.play(states[g], action)
    positions, policies, results, keys = [], [], [], []
    for final, record in zip(states, records):
        for state, policy, q in record:
            # The final side to move has result final.result; every other ply flips it.
            sign = 1.0 if (final.ply - state.ply) % 2 == 0 else -1.0
            # One game's result is a noisy label for every position in it; the search's value is not.
            z = (1 - cfg.value_target_search) * sign * game.outcome(final) + cfg.value_target_search * q
            for mirrored in (False, True):
                positions.append((state, mirrored))
                policies.append(np.array([policy[game.mirror_action(a)] for a in range(game.num_actions)])
                                if mirrored else policy)
                results.append(z)
            keys += [game.key(state), game.mirror_key(state)]
    planes = game.planes([s for s, _ in positions])
    flip = np.array([m for _, m in positions])
    planes[flip] = planes[flip][:, :, ::-1, :]
    return planes, np.asarray(policies, np.float32), np.asarray(results, np.float32), keys


class Buffer:
    """The newest `capacity` positions, saved to and restored from one .npz file."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.planes = self.policies = self.results = None

    def __len__(self):
        return 0 if self.results is None else len(self.results)

    def add(self, planes, policies, results):
        if self.results is None:
            self.planes, self.policies, self.results = planes, policies, results
        else:
            self.planes = np.concatenate([self.planes, planes])[-self.capacity:]
            self.policies = np.concatenate([self.policies, policies])[-self.capacity:]
            self.results = np.concatenate([self.results, results])[-self.capacity:]

    def sample(self, batch: int, rng: np.random.Generator):
        i = rng.integers(0, len(self), batch)
        return self.planes[i], {"policy": self.policies[i], "value": self.results[i]}

    def save(self, path: Path):
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez_compressed(tmp, planes=self.planes, policies=self.policies, results=self.results)
        tmp.replace(path)

    def load(self, path: Path):
        with np.load(path) as f:
            self.planes, self.policies, self.results = f["planes"], f["policies"], f["results"]

    def dataset(self, batch: int) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(
            (self.planes, {"policy": self.policies, "value": self.results})).batch(batch)


def compile_model(model: keras.Model, learning_rate: float) -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss={"policy": keras.losses.CategoricalCrossentropy(from_logits=True),
                        "value": keras.losses.MeanSquaredError()})


def load_progress(state_dir: Path) -> dict | None:
    """The progress.json of the last iteration saved in `state_dir` (with the names of its network and
    buffer files), None when nothing was saved, or ValueError saying how to start over."""
    path = state_dir / PROGRESS_FILE
    if not path.exists():
        return None
    start_over = f"Delete {state_dir} to start the self-play over."
    try:
        progress = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"Cannot resume self-play: {path} is not valid JSON ({err}). {start_over}") from None
    if not isinstance(progress, dict) or not {"iteration", "history", "seen_keys", "seconds"} <= progress.keys():
        raise ValueError(f"Cannot resume self-play: {path} is not a self-play progress file. {start_over}")
    # A run saved under fixed file names resumes too.
    progress.setdefault("network", "network")
    progress.setdefault("buffer", "buffer.npz")
    missing = [name for name in (progress["network"] + ".index", progress["buffer"]) if not (state_dir / name).exists()]
    if missing:
        raise ValueError(f"Cannot resume self-play: {path} names {', '.join(missing)}, missing from {state_dir}. "
                         f"{start_over}")
    return progress


def save_progress(state_dir: Path, progress: dict, checkpoint: tf.train.Checkpoint, buffer: Buffer) -> None:
    """Saves the network and buffer under names of their own, then progress.json naming them, then
    drops the previous iteration's files: a run killed at any point resumes from complete files."""
    names = {"network": f"network-{progress['iteration']}", "buffer": f"buffer-{progress['iteration']}.npz"}
    checkpoint.write(str(state_dir / names["network"]))
    buffer.save(state_dir / names["buffer"])
    progress.update(names)
    path = state_dir / PROGRESS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(progress) + "\n")
    tmp.replace(path)
    for stale in state_dir.iterdir():
        if stale.name.startswith(("network", "buffer")) and not (
                stale.name.startswith(names["network"] + ".") or stale.name == names["buffer"]):
            if stale.is_dir():  # TF's temporary folder of a write that was killed
                shutil.rmtree(stale)
            else:
                stale.unlink()


def train(model: keras.Model, game: Game, cfg, workdir: Path, batch_size: int, log=print) -> dict:
    """Runs iterations until `cfg.epochs` or the time budget; resumes from workdir/selfplay."""
    state_dir = workdir / "selfplay"
    state_dir.mkdir(parents=True, exist_ok=True)
    buffer = Buffer(cfg.buffer_size)
    # The optimizer's moments are saved with the weights: a resumed run continues the same descent.
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    progress = load_progress(state_dir)
    if progress is None:
        progress = {"iteration": 0, "history": {}, "seen_keys": [], "seconds": 0.0}
    else:
        model.optimizer.build(model.trainable_variables)
        checkpoint.read(str(state_dir / progress["network"])).assert_consumed()
        buffer.load(state_dir / progress["buffer"])
        log(f"[game_agent] resuming after iteration {progress['iteration']} ({len(buffer)} positions)")
    history = progress["history"]
    seen = set(progress["seen_keys"])
    rng = np.random.default_rng(cfg.seed + progress["iteration"])
    evaluate = mcts.network_evaluator(game, model)
    network = agents.LookaheadAgent(game, model, cfg.policy_weight)  # the learning curve's player
    start = time.monotonic()
    stopped_by_budget = False
    while progress["iteration"] < cfg.epochs:
        if cfg.time_budget_s and time.monotonic() - start > cfg.time_budget_s:
            stopped_by_budget = True
            break
        t0 = time.monotonic()
        planes, policies, results, keys = self_play(game, evaluate, cfg, rng)
        buffer.add(planes, policies, results)
        seen.update(keys)
        t1 = time.monotonic()
        steps = cfg.steps_per_epoch or max(1, 2 * len(results) // batch_size)
        losses = {"loss": [], "policy_loss": [], "value_loss": []}
        for _ in range(steps):
            x, y = buffer.sample(batch_size, rng)
            logs = model.train_on_batch(x, y, return_dict=True)
            for k in losses:
                losses[k].append(float(logs.get(k, np.nan)))
        t2 = time.monotonic()
        seed = cfg.seed + 7919 * progress["iteration"]
        curve = {f"score_vs_{opponent.name}": agents.play_match(game, network, opponent, cfg.curve_games,
                                                                 opening_plies=cfg.opening_plies,
                                                                 seed=seed)["score"]
                 for opponent in (agents.RandomAgent(game, seed), agents.GreedyAgent(game, seed))}
        t3 = time.monotonic()
        progress["iteration"] += 1
        row = {"iteration": progress["iteration"], **{k: float(np.mean(v)) for k, v in losses.items()}, **curve,
               "selfplay_positions": float(len(results)), "buffer": float(len(buffer)),
               "selfplay_seconds": t1 - t0, "train_seconds": t2 - t1, "curve_seconds": t3 - t2,
               "epoch_seconds": t3 - t0, "examples_per_second": steps * batch_size / max(t2 - t1, 1e-9),
               "selfplay_moves_per_second": len(results) / 2 / max(t1 - t0, 1e-9)}
        for k, v in row.items():
            history.setdefault(k, []).append(v)
        progress["seconds"] += t3 - t0
        progress["seen_keys"] = sorted(seen)
        save_progress(state_dir, progress, checkpoint, buffer)
        if cfg.verbose:
            log(f"[game_agent] iteration {progress['iteration']}: loss {row['loss']:.3f} "
                f"(policy {row['policy_loss']:.3f}, value {row['value_loss']:.3f}), "
                + ", ".join(f"{k} {v:.2f}" for k, v in curve.items())
                + f", {row['selfplay_moves_per_second']:.0f} self-play moves/s, {t3 - t0:.1f} s")
    return {"history": history, "epochs_run": progress["iteration"], "first_epoch": 0,
            "train_seconds": progress["seconds"], "stopped_by_time_budget": stopped_by_budget,
            "buffer": buffer, "seen_keys": seen}
