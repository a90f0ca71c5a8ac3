"""The exported endpoints: a move history or a board in, the chosen move, value, policy and board out.

Everything runs in the graph with stock ops: the history is replayed in a bounded tf.while_loop,
fours are found by a 4x4 convolution, and the lookahead (win now, block, do not play under the
opponent's win, otherwise the best 1-ply network value + policy_weight x prior) evaluates all
seven replies of every request in one batched network call. agents.LookaheadAgent is the same
rule in Python.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from apps.game_agent.agents import BLOCK_BONUS, GIVE_AWAY_PENALTY, WIN_BONUS
from core.data import check_utf8
from core.export import run_model

ROWS, COLS = 6, 7
CELLS = ROWS * COLS


def _four_kernels() -> np.ndarray:
    """4x4 kernels of a horizontal, a vertical and both diagonal lines from the window's top-left."""
    k = np.zeros((4, 4, 1, 4), np.float32)
    for i in range(4):
        k[0, i, 0, 0] = k[i, 0, 0, 1] = k[i, i, 0, 2] = k[i, 3 - i, 0, 3] = 1
    return k


def has_four(stones: tf.Tensor) -> tf.Tensor:
    """bool [...] whether the 0/1 boards [..., 6, 7] hold four in a row."""
    shape = tf.shape(stones)
    flat = tf.reshape(tf.cast(stones, tf.float32), [-1, ROWS, COLS, 1])
    padded = tf.pad(flat, [[0, 0], [0, 3], [0, 3], [0, 0]])  # every window starts on the board
    lines = tf.nn.conv2d(padded, tf.constant(_four_kernels()), strides=1, padding="VALID")
    return tf.reshape(tf.reduce_any(lines > 3.5, axis=[1, 2, 3]), shape[:-2])


def _refuse(bad: tf.Tensor, messages: tf.Tensor) -> tf.Operation:
    """InvalidArgument with the first bad row's message (a safe placeholder row keeps [0] rows legal)."""
    bad = tf.concat([bad, [False]], 0)
    messages = tf.concat([messages, [""]], 0)
    first = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int32)
    return tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [messages[first]])


def _quoted(text: tf.Tensor) -> tf.Tensor:
    """The first 60 characters (no quotes: tf.debugging.Assert would print them escaped)."""
    short = tf.strings.substr(text, 0, 60, unit="UTF8_CHAR")
    return tf.strings.join([short, tf.where(tf.strings.length(text, unit="UTF8_CHAR") > 60, "...", "")])


def parse_moves(moves: tf.Tensor) -> tf.Tensor:
    """Histories "4453" [N] -> grids int32 [N, 6, 7] (row 0 on top; 1 = first player, 2 = second).

    An illegal history (a character that is not 1-7, a full column, a move after a win, more than
    42 moves) is an InvalidArgument naming the request index and the ply.
    """
    moves = check_utf8(moves, "moves")
    codes = tf.strings.unicode_decode(moves, "UTF-8")
    lengths = tf.cast(codes.row_lengths(), tf.int32)
    n = tf.shape(moves)[0]
    index = tf.strings.as_string(tf.range(n))
    too_long = _refuse(lengths > CELLS, tf.strings.join(
        ["Invalid moves[", index, "]: ", tf.strings.as_string(lengths), " moves, more than the ",
         str(CELLS), " cells of the board; received moves[", index, "]: ", _quoted(moves)]))
    with tf.control_dependencies([too_long]):
        columns = codes.to_tensor(default_value=0, shape=[None, CELLS]) - ord("1")
    plies = tf.minimum(tf.maximum(tf.reduce_max(tf.concat([lengths, [0]], 0)), 0), CELLS)

    def step(t, grid, heights, over, error_ply, error_kind):
        column = columns[:, t]
        active = tf.logical_and(t < lengths, tf.equal(error_ply, 0))
        not_column = tf.logical_and(active, tf.logical_or(column < 0, column >= COLS))
        chosen = tf.one_hot(tf.clip_by_value(column, 0, COLS - 1), COLS, dtype=tf.int32)
        height = tf.reduce_sum(heights * chosen, axis=1)
        placeable = tf.logical_and(active, tf.logical_not(not_column))
        after_end = tf.logical_and(placeable, over)
        full = tf.logical_and(placeable, tf.logical_and(tf.logical_not(over), height >= ROWS))
        kind = tf.where(not_column, 1, tf.where(after_end, 2, tf.where(full, 3, 0)))
        error_ply = tf.where(kind > 0, t + 1, error_ply)
        error_kind = tf.where(kind > 0, kind, error_kind)
        ok = tf.logical_and(active, tf.equal(kind, 0))
        cell = tf.one_hot(ROWS - 1 - height, ROWS, dtype=tf.int32)[:, :, None] * chosen[:, None, :]
        player = 1 + t % 2
        grid = grid + tf.where(ok[:, None, None], cell * player, 0)
        heights = heights + tf.where(ok[:, None], chosen, 0)
        over = tf.logical_or(over, tf.logical_and(ok, has_four(tf.equal(grid, player))))
        return t + 1, grid, heights, over, error_ply, error_kind

    zeros = tf.zeros([n], tf.int32)
    _, grid, _, _, error_ply, error_kind = tf.while_loop(
        lambda t, *_: t < plies, step,
        (tf.constant(0), tf.zeros([n, ROWS, COLS], tf.int32), tf.zeros([n, COLS], tf.int32),
         tf.zeros([n], tf.bool), zeros, zeros), maximum_iterations=CELLS)
    char = tf.strings.substr(moves, tf.maximum(error_ply - 1, 0), tf.ones_like(error_ply), unit="UTF8_CHAR")
    reason = tf.gather(tf.constant(["", "is not a column 1-7", "comes after the game was already won",
                                    "plays a column that is full"]), error_kind)
    illegal = _refuse(error_ply > 0, tf.strings.join(
        ["Invalid moves[", index, "]: ply ", tf.strings.as_string(error_ply), " (", char, ") ", reason,
         "; received moves[", index, "]: ", _quoted(moves)]))
    with tf.control_dependencies([illegal]):
        return tf.identity(grid)


def check_board(board: tf.Tensor) -> tf.Tensor:
    """Boards int32 [N, 6, 7] (0 empty, 1 first player, 2 second, row 0 on top), refused with the
    request index when a value is not 0/1/2, a stone floats over an empty cell, or the counts do
    not alternate (the first player has as many stones as the second or one more)."""
    index = tf.strings.as_string(tf.range(tf.shape(board)[0]))
    bad_value = tf.reduce_any(tf.logical_or(board < 0, board > 2), axis=[1, 2])
    floating = tf.reduce_any(tf.logical_and(board[:, :-1] > 0, tf.equal(board[:, 1:], 0)), axis=[1, 2])
    lead = tf.reduce_sum(tf.cast(tf.equal(board, 1), tf.int32), [1, 2]) - \
        tf.reduce_sum(tf.cast(tf.equal(board, 2), tf.int32), [1, 2])
    uneven = tf.logical_or(lead < 0, lead > 1)
    kind = tf.where(bad_value, 1, tf.where(floating, 2, tf.where(uneven, 3, 0)))
    reason = tf.gather(tf.constant(["", "holds a value other than 0 (empty), 1 or 2",
                                    "has a stone above an empty cell",
                                    "does not alternate: player 1 needs as many stones as player 2 or one "
                                    "more; player 1 minus player 2 is "]), kind)
    check = _refuse(kind > 0, tf.strings.join(
        ["Invalid board[", index, "]: it ", reason, tf.where(kind == 3, tf.strings.as_string(lead), "")]))
    with tf.control_dependencies([check]):
        return tf.identity(board)


def respond(model, grid: tf.Tensor, policy_weight: float) -> dict[str, tf.Tensor]:
    """Grids [N, 6, 7] -> move int32 [N] (1-7; 0 once the game is over), value [N] for the side to
    move, policy [N, 7] over legal moves, board text [N] with the chosen move marked `*`."""
    ply = tf.reduce_sum(tf.cast(grid > 0, tf.int32), axis=[1, 2])
    to_move = tf.where(ply % 2 == 0, 1, 2)[:, None, None]
    own = tf.cast(tf.equal(grid, to_move), tf.float32)
    theirs = tf.cast(tf.equal(grid, 3 - to_move), tf.float32)
    won = has_four(theirs)  # the last mover won
    finished = tf.logical_or(won, ply >= CELLS)
    out = run_model(model, tf.stack([own, theirs], axis=-1))

    legal = tf.logical_and(tf.equal(grid[:, 0, :], 0), tf.logical_not(finished)[:, None])
    empties = tf.reduce_sum(tf.cast(tf.equal(grid, 0), tf.int32), axis=1)  # [N, 7]
    columns = tf.eye(COLS)[None, :, None, :]  # [1, 7 moves, 1, 7 columns]
    drop = tf.one_hot(empties - 1, ROWS, axis=1)[:, None] * columns  # [N, 7, 6, 7]: the stone of each move
    above = tf.one_hot(empties - 2, ROWS, axis=1)[:, None] * columns  # the cell on top of it
    own_after = own[:, None] + drop
    win_now = tf.logical_and(legal, has_four(own_after))
    block = tf.logical_and(tf.logical_and(legal, has_four(theirs[:, None] + drop)), tf.logical_not(win_now))
    gives_away = tf.logical_and(tf.logical_and(legal, empties >= 2), has_four(theirs[:, None] + above))
    gives_away = tf.logical_and(gives_away, tf.logical_not(win_now))
    n = tf.shape(grid)[0]
    children = tf.reshape(tf.stack([tf.broadcast_to(theirs[:, None], tf.shape(own_after)), own_after], -1),
                          [n * COLS, ROWS, COLS, 2])
    child_value = tf.reshape(run_model(model, children)["value"], [n, COLS])
    q = tf.where((ply + 1 >= CELLS)[:, None], 0.0, -child_value)  # a full board is a draw

    logits = tf.where(legal, out["policy"], -np.inf)
    policy = tf.where(legal, tf.nn.softmax(tf.where(legal, logits, -1e9)), 0.0)
    score = q + policy_weight * policy
    score = score + WIN_BONUS * tf.cast(win_now, tf.float32) + BLOCK_BONUS * tf.cast(block, tf.float32)
    score = score - GIVE_AWAY_PENALTY * tf.cast(gives_away, tf.float32)
    score = tf.where(legal, score, -np.inf)
    best = tf.argmax(score, axis=1, output_type=tf.int32)
    move = tf.where(finished, 0, best + 1)
    value = tf.where(won, -1.0, tf.where(finished, 0.0, out["value"]))

    marked = grid + 3 * tf.cast(tf.gather(drop, best, batch_dims=1), tf.int32) * \
        tf.cast(tf.logical_not(finished), tf.int32)[:, None, None]
    cells = tf.gather(tf.constant([".", "X", "O", "*"]), marked)
    rows = tf.strings.reduce_join(cells, axis=2, separator=" ")
    board = tf.strings.join([tf.strings.reduce_join(rows, axis=1, separator="\n"), "1 2 3 4 5 6 7"],
                            separator="\n")
    return {"move": move, "value": tf.cast(value, tf.float32), "policy": tf.cast(policy, tf.float32),
            "board": board}


def make_endpoints(model, policy_weight: float) -> dict:
    # No autograph: the graph uses explicit tf.while_loop / tf.where, and tracing never rereads source files.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="moves")], autograph=False)
    def serving_default(moves):
        return respond(model, parse_moves(moves), policy_weight)

    @tf.function(input_signature=[tf.TensorSpec([None, ROWS, COLS], tf.int32, name="board")], autograph=False)
    def predict_board(board):
        return respond(model, check_board(board), policy_weight)

    return {"serving_default": serving_default, "predict_board": predict_board}
