"""Game agent: Connect Four rules, search, self-play learning, the export's lookahead and its errors."""

import json

import numpy as np
import pytest
import tensorflow as tf

from apps.game_agent import Config, Pipeline, agents, bench, data, mcts, selfplay
from apps.game_agent.games import ConnectFour, aligned
from core.bench import check_bars
from core.testing import AppContract, smoke_fit

GAME = ConnectFour()
DRAW = "126613431456475467333341527215612225546777"  # 42 moves, nobody connects four


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return smoke_fit(Pipeline, tmp_path_factory)


def brute_force_winner(grid: np.ndarray) -> int:
    """0, 1 or 2: the player with four in a row, by checking every cell and direction."""
    for r in range(6):
        for c in range(7):
            for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                cells = [(r + i * dr, c + i * dc) for i in range(4)]
                if all(0 <= y < 6 and 0 <= x < 7 for y, x in cells):
                    values = {int(grid[y, x]) for y, x in cells}
                    if len(values) == 1 and values != {0}:
                        return values.pop()
    return 0


@pytest.mark.parametrize("moves, direction", [
    ("1122334", "horizontal"), ("1212121", "vertical"),
    ("12234334544", "diagonal /"), ("76654554344", "diagonal \\")])
def test_four_in_a_row_wins_in_every_direction(moves, direction):
    before, after = GAME.from_moves(moves[:-1]), GAME.from_moves(moves)
    assert before.result is None and GAME.winning_actions(before) == [int(moves[-1]) - 1], direction
    assert after.result == -1.0 and GAME.legal(after) == []  # the side to move has lost
    assert brute_force_winner(GAME.grid(after)) == 1 and brute_force_winner(GAME.grid(before)) == 0


def test_full_board_without_four_is_a_draw_and_grids_round_trip():
    state = GAME.from_moves(DRAW)
    assert state.ply == 42 and state.result == 0.0 and GAME.legal(state) == []
    assert brute_force_winner(GAME.grid(state)) == 0
    for cut in (0, 5, 17, 41):
        partial = GAME.from_moves(DRAW[:cut])
        assert GAME.from_grid(GAME.grid(partial)) == partial
    assert GAME.render(GAME.from_moves("4453"), mark=2).splitlines() == [
        ". . . . . . .", ". . . . . . .", ". . . . . . .", ". . . . . . .", ". . * O . . .",
        ". . O X X . .", "1 2 3 4 5 6 7"]


@pytest.mark.parametrize("moves, message", [
    ("448", "ply 3 is '8', not a column 1-7"), ("4a", "ply 2 is 'a'"),
    ("1111111", "ply 7 plays column 1, which is full"),
    ("12121213", "ply 8 plays column 3 after the game ended")])
def test_illegal_histories_are_refused_naming_the_ply(moves, message):
    with pytest.raises(ValueError, match=message):
        GAME.from_moves(moves)


def test_aligned_matches_brute_force_on_random_positions():
    rng = np.random.default_rng(0)
    for _ in range(300):
        state = GAME.initial()
        while state.result is None and rng.random() > 0.03:
            state = GAME.play(state, int(rng.choice(GAME.legal(state))))
        grid = GAME.grid(state)
        mover = 1 if state.ply % 2 else 2  # who played last
        assert aligned(state.position ^ state.mask) == (brute_force_winner(grid) == mover)


def test_search_finds_the_win_and_the_block_with_few_simulations():
    uniform = mcts.rollout_evaluator(GAME, seed=0)
    win, block = GAME.from_moves("121212"), GAME.from_moves("11223")
    counts, _ = mcts.search(GAME, [win, block], uniform, 24)
    assert np.argmax(counts[0]) == 0 and np.argmax(counts[1]) == 3


def test_search_proves_a_double_threat_lost_without_the_network():
    def blind(states):  # no knowledge at all: uniform priors, every position even
        return np.ones((len(states), GAME.num_actions), np.float32), np.zeros(len(states), np.float32)

    # X on columns 3 and 4 of the bottom row: unless O blocks at 2 or 5 now, X's third stone there
    # leaves two winning columns open, one more than O can block.
    threatened, lost = GAME.from_moves("374"), GAME.from_moves("37475")
    counts, searched = mcts.search(GAME, [threatened, lost], blind, 200)
    assert set(np.flatnonzero(counts[0])) == {1, 4} and searched[1] == -1.0


def test_negamax_and_greedy_take_wins_and_blocks():
    for agent in (agents.GreedyAgent(GAME), agents.NegamaxAgent(GAME, 2), agents.NegamaxAgent(GAME, 4)):
        assert agent.choose([GAME.from_moves("121212"), GAME.from_moves("11223")]) == [0, 3], agent.name
    # Depth 4 sees a double threat coming that depth 1 cannot: open three on the bottom row.
    assert agents.NegamaxAgent(GAME, 4).choose([GAME.from_moves("4455")])[0] in (2, 5)


def test_self_play_records_mirrored_positions_and_consistent_results():
    cfg = Config.preset("smoke", games_per_iteration=4, simulations=4, value_target_search=0.0)
    planes, policies, results, keys = selfplay.self_play(GAME, mcts.rollout_evaluator(GAME), cfg,
                                                         np.random.default_rng(0))
    assert planes.shape[1:] == (6, 7, 2) and len(planes) == len(policies) == len(results) == len(keys)
    np.testing.assert_array_equal(planes[1::2], planes[0::2][:, :, ::-1, :])
    np.testing.assert_allclose(policies[1::2], policies[0::2][:, ::-1])
    np.testing.assert_allclose(policies.sum(axis=1), 1.0, atol=1e-5)
    assert set(np.unique(results)) <= {-1.0, 0.0, 1.0}
    assert planes[0].sum() == 0  # every game starts on the empty board
    # The same games with half the value target taken from the search: the result's half plus a value in
    # [-0.5, 0.5] that differs from position to position, the same for a position and its mirror.
    _, _, mixed, _ = selfplay.self_play(GAME, mcts.rollout_evaluator(GAME), cfg.replace(value_target_search=0.5),
                                        np.random.default_rng(0))
    searched = mixed - 0.5 * results
    assert np.abs(searched).max() <= 0.5 + 1e-6 and len(np.unique(searched.round(4))) > 3
    np.testing.assert_allclose(mixed[1::2], mixed[0::2])


def test_self_play_saves_progress_last_and_refuses_a_broken_one_clearly(tmp_path):
    cfg = Config.preset("smoke", epochs=1, games_per_iteration=2, simulations=4, steps_per_epoch=1,
                        curve_games=2, time_budget_s=0)
    model = Pipeline(cfg, tmp_path / "run").build_model()
    selfplay.compile_model(model, cfg.learning_rate)
    selfplay.train(model, GAME, cfg, tmp_path, batch_size=8)
    assert selfplay.train(model, GAME, cfg.replace(epochs=2), tmp_path, batch_size=8)["epochs_run"] == 2
    state_dir = tmp_path / "selfplay"
    # Only the last iteration's files are left, and progress.json names them.
    assert sorted(p.name for p in state_dir.iterdir()) == [
        "buffer-2.npz", "network-2.data-00000-of-00001", "network-2.index", "progress.json"]
    progress = selfplay.load_progress(state_dir)
    assert (progress["iteration"], progress["network"], progress["buffer"]) == (2, "network-2", "buffer-2.npz")
    reader = Pipeline(cfg, tmp_path)  # a fresh pipeline finds the buffer and keys through progress.json
    assert reader.seen_keys() == set(progress["seen_keys"]) and reader.training_data(None)[0] is not None
    text = (state_dir / "progress.json").read_text()
    (state_dir / "progress.json").write_text(text[:len(text) // 2])  # what a kill mid-write used to leave
    with pytest.raises(ValueError, match=r"progress.json is not valid JSON .*Delete .* to start the self-play over"):
        selfplay.train(model, GAME, cfg.replace(epochs=3), tmp_path, batch_size=8)
    (state_dir / "progress.json").write_text(text)
    (state_dir / "buffer-2.npz").unlink()
    with pytest.raises(ValueError, match="names buffer-2.npz, missing from"):
        selfplay.train(model, GAME, cfg.replace(epochs=3), tmp_path, batch_size=8)


def test_smoke_self_play_beats_random_clearly(trained):
    pipeline, fit = trained
    metrics = pipeline.evaluate()
    # 20 games alternating who starts; a random player scores 0.5 against itself.
    assert metrics["score_vs_random"] >= 0.9, metrics
    assert metrics["network_score_vs_random"] >= 0.9, metrics  # the export's rule, without search
    assert fit["epochs_run"] == 3 and len(fit["history"]["score_vs_random"]) == 3
    assert fit["history"]["value_loss"][-1] < fit["history"]["value_loss"][0]
    assert (pipeline.workdir / "learning_curve.png").exists() and (pipeline.workdir / "policy_over_board.png").exists()


def test_fit_resumes_from_the_workdir(trained):
    pipeline, fit = trained
    more = Pipeline(pipeline.config.replace(epochs=4), pipeline.workdir)
    result = more.fit()
    assert result["epochs_run"] == 4
    assert result["history"]["loss"][:3] == fit["history"]["loss"]


def test_export_moves_match_the_python_agent_and_take_wins_and_blocks(trained):
    pipeline, _ = trained
    histories = data.baseline_positions(GAME, 150, seed=77)
    states = [GAME.from_moves(h) for h in histories]
    answers = pipeline.predict(histories)
    python_moves = agents.LookaheadAgent(GAME, pipeline.model, pipeline.config.policy_weight).choose(states)
    exported = [a["move"] - 1 for a in answers]
    assert np.mean(np.array(exported) == np.array(python_moves)) >= 0.98, (exported, python_moves)
    tactical = 0
    for state, move in zip(states, exported):
        wins, threats = GAME.winning_actions(state), GAME.threats(state)
        if wins:
            assert move in wins
        elif threats:
            assert move in threats
        tactical += bool(wins or threats)
    assert tactical >= 10
    # The board signature answers the same as the history one.
    out = pipeline.endpoints["predict_board"](board=tf.constant(np.stack([GAME.grid(s) for s in states[:20]])))
    assert [int(m) - 1 for m in out["move"].numpy()] == exported[:20]


def test_export_answers_positions_and_finished_games(trained):
    pipeline, _ = trained
    win, block, start, over = pipeline.predict(["121212", "11223", "", "1212121"])
    assert win["move"] == 1 and block["move"] == 4
    assert start["board"].splitlines()[-2].split()[start["move"] - 1] == "*"
    assert abs(sum(start["policy"].values()) - 1) < 1e-4
    assert over["move"] == 0 and over["value"] == -1.0 and sum(over["policy"].values()) == 0


@pytest.mark.parametrize("moves, pattern", [
    (["44", "448"], r"Invalid moves\[1\]: ply 3 \(8\) is not a column 1-7; received moves\[1\]: 448"),
    (["1111111"], r"Invalid moves\[0\]: ply 7 \(1\) plays a column that is full"),
    (["", "12121213"], r"Invalid moves\[1\]: ply 8 \(3\) comes after the game was already won"),
    (["4" * 43], r"Invalid moves\[0\]: 43 moves, more than the 42 cells"),
    (["4 4"], r"Invalid moves\[0\]: ply 2 \( \) is not a column 1-7")])
def test_export_refuses_bad_histories_naming_request_and_ply(trained, moves, pattern):
    pipeline, _ = trained
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        pipeline.endpoints["serving_default"](moves=tf.constant(moves))


def test_board_signature_refuses_impossible_boards(trained):
    pipeline, _ = trained
    good = GAME.grid(GAME.from_moves("4453"))
    floating, extra, value = good.copy(), good.copy(), good.copy()
    floating[0, 0] = 1
    extra[5, 0] = extra[5, 6] = 1  # two more stones for player 1
    value[5, 6] = 7
    for board, pattern in ((floating, "stone above an empty cell"), (extra, "does not alternate"),
                           (value, "value other than 0")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=rf"Invalid board\[1\]: it .*{pattern}"):
            pipeline.endpoints["predict_board"](board=tf.constant(np.stack([good, board])))


def test_solver_labels_and_accuracy_metrics(trained):
    pytest.importorskip("bitbully", reason="the solver referee is the optional `eval` extra (bitbully)")
    from apps.game_agent import evaluation

    solver = evaluation.load_solver()
    scores = evaluation.solver_scores(solver, "121212")
    assert evaluation.keeps_value(scores, 0) and not evaluation.keeps_value(scores, 3)
    pipeline = trained[0]
    metrics = json.loads((pipeline.workdir / "metrics.json").read_text()).get("test") or pipeline.evaluate()
    for key in ("raw_accuracy", "search_accuracy", "network_accuracy", "solver_kept_moves"):
        assert 0 <= metrics[key] <= (1 if key.endswith("accuracy") else 42), metrics
    # Searching helps on held-out positions: with the solver as referee, search beats chance moves.
    assert metrics["search_accuracy"] > 0.6


def test_bench_spec_builds_its_config_and_bars():
    config = bench.BENCH.config(Config)
    assert config.negamax_depth == 4 and config.eval_games == 200 and config.ablation
    bars = check_bars(bench.BENCH.bars, {"seeds_min_score_vs_negamax4": 0.95, "seeds_min_raw_accuracy": 0.8,
                                         "seeds_min_search_accuracy": 0.96, "score_vs_negamax4": 0.95,
                                         "pure_mcts_score_vs_negamax4": 0.5})
    assert [b["met"] for b in bars] == [True, False, True, True]
    assert bench.BENCH.seeds == (1, 2)  # every bar but the ablation is asked of seeds 0, 1 and 2


@pytest.mark.slow
def test_demo_self_play_teaches_the_network_alone_to_beat_random_and_greedy(tmp_path):
    # Minutes of self-play: the policy head alone (no search, no lookahead) must improve on the
    # untrained network against the same opponents and openings.
    pipeline = Pipeline(Config.preset("demo", time_budget_s=200, epochs=100, verbose=0), tmp_path)
    untrained = pipeline.build_model()
    pipeline.fit()

    def scores(model):
        return [agents.play_match(GAME, agents.PolicyAgent(GAME, model), opponent, 40, seed=11)["score"]
                for opponent in (agents.RandomAgent(GAME, 5), agents.GreedyAgent(GAME, 5))]

    (random_before, greedy_before), (random_after, greedy_after) = scores(untrained), scores(pipeline.model)
    assert random_after >= max(0.85, random_before + 0.2), (random_before, random_after)
    assert greedy_after >= greedy_before + 0.25, (greedy_before, greedy_after)


class TestContract(AppContract):
    """The catalogue's export contract on the trained smoke model (core.testing.AppContract)."""
