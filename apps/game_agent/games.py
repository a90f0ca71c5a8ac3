"""Games behind one small interface: search, agents and training only talk to `Game`.

A state is immutable and hashable; values are always from the side to move (+1 it wins, -1 it
loses). Connect Four is a bitboard (Pascal Pons' layout): search and rollouts in plain Python
stay fast enough for self-play on two CPU cores.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Game:
    """The rules a search needs. Subclasses set the class attributes and the methods below.

    Attributes:
        name: short name used in configs.
        rows, cols: the board as the network sees it (planes [rows, cols, 2]: own stones, theirs).
        num_actions: size of the policy.
    """

    name: str = ""
    rows: int = 0
    cols: int = 0
    num_actions: int = 0

    def initial(self):
        raise NotImplementedError

    def legal(self, state) -> list[int]:
        """Legal actions (empty once the game is over)."""
        raise NotImplementedError

    def play(self, state, action: int):
        raise NotImplementedError

    def outcome(self, state) -> float | None:
        """None while the game goes on; else the result for the side to move (-1 lost, 0 draw)."""
        raise NotImplementedError

    def planes(self, states) -> np.ndarray:
        """float32 [B, rows, cols, 2]: the side to move's stones, then the opponent's."""
        raise NotImplementedError

    def mirror_action(self, action: int) -> int:
        """The action in the left-right mirror of the board (the augmentation of the replay buffer)."""
        raise NotImplementedError

    def winning_actions(self, state) -> list[int]:
        """Actions that win at once for the side to move."""
        raise NotImplementedError

    def threats(self, state) -> list[int]:
        """Actions where the opponent would win if it moved now: the ones the side to move must block."""
        raise NotImplementedError

    def key(self, state) -> int:
        """A unique integer per position (for held-out checks and transposition tables)."""
        raise NotImplementedError

    def mirror_key(self, state) -> int:
        """The key of the position's left-right mirror image."""
        raise NotImplementedError


class C4State(NamedTuple):
    position: int  # stones of the side to move
    mask: int  # every stone
    ply: int  # moves played
    result: float | None  # outcome for the side to move, None while the game goes on


HEIGHT, WIDTH = 6, 7
_H1 = HEIGHT + 1  # one sentinel bit on top of each column keeps shifts from wrapping
BOTTOM = [1 << (c * _H1) for c in range(WIDTH)]
TOP = [1 << (c * _H1 + HEIGHT - 1) for c in range(WIDTH)]
COLUMN = [((1 << HEIGHT) - 1) << (c * _H1) for c in range(WIDTH)]
CENTRE_ORDER = (3, 2, 4, 1, 5, 0, 6)
# Bit of each display cell (row 0 is the top row).
CELL_BITS = np.array([[c * _H1 + (HEIGHT - 1 - r) for c in range(WIDTH)] for r in range(HEIGHT)], np.uint64)


def aligned(stones: int) -> bool:
    """Whether `stones` hold four in a row (horizontal, both diagonals, vertical)."""
    for shift in (_H1, HEIGHT, _H1 + 1, 1):
        m = stones & (stones >> shift)
        if m & (m >> (2 * shift)):
            return True
    return False


def _windows() -> list[int]:
    """Bitmasks of the 69 lines of four cells: the negamax heuristic counts stones in them."""
    out = []
    for c in range(WIDTH):
        for r in range(HEIGHT):
            for dc, dr in ((1, 0), (0, 1), (1, 1), (1, -1)):
                cells = [(c + i * dc, r + i * dr) for i in range(4)]
                if all(0 <= x < WIDTH and 0 <= y < HEIGHT for x, y in cells):
                    out.append(sum(1 << (x * _H1 + y) for x, y in cells))
    return out


WINDOWS = _windows()
CENTRE_COLUMN = COLUMN[3]


class ConnectFour(Game):
    """Connect Four on 6 rows x 7 columns; action c drops a stone in column c (0-based)."""

    name = "connect4"
    rows, cols, num_actions = HEIGHT, WIDTH, WIDTH

    def initial(self) -> C4State:
        return C4State(0, 0, 0, None)

    def legal(self, state: C4State) -> list[int]:
        if state.result is not None:
            return []
        return [c for c in range(WIDTH) if not state.mask & TOP[c]]

    def play(self, state: C4State, action: int) -> C4State:
        mask = state.mask | (state.mask + BOTTOM[action])
        mover = state.position | (mask ^ state.mask)
        ply = state.ply + 1
        result = -1.0 if aligned(mover) else (0.0 if ply == HEIGHT * WIDTH else None)
        return C4State(mover ^ mask, mask, ply, result)

    def outcome(self, state: C4State) -> float | None:
        return state.result

    def winning_actions(self, state: C4State) -> list[int]:
        return [c for c in self.legal(state)
                if aligned(state.position | ((state.mask + BOTTOM[c]) & COLUMN[c]))]

    def threats(self, state: C4State) -> list[int]:
        """Columns where the opponent would win by playing now: the side to move must block them."""
        theirs = state.position ^ state.mask
        return [c for c in self.legal(state) if aligned(theirs | ((state.mask + BOTTOM[c]) & COLUMN[c]))]

    def planes(self, states) -> np.ndarray:
        position = np.array([s.position for s in states], np.uint64)[:, None, None]
        mask = np.array([s.mask for s in states], np.uint64)[:, None, None]
        own = (position >> CELL_BITS) & np.uint64(1)
        theirs = ((position ^ mask) >> CELL_BITS) & np.uint64(1)
        return np.stack([own, theirs], axis=-1).astype(np.float32).reshape(len(states), HEIGHT, WIDTH, 2)

    def mirror_action(self, action: int) -> int:
        return WIDTH - 1 - action

    def key(self, state: C4State) -> int:
        return state.position + state.mask  # unique per position (Pons)

    def mirror_key(self, state: C4State) -> int:
        def flip(x):
            return sum(((x >> (c * _H1)) & 0x7F) << ((WIDTH - 1 - c) * _H1) for c in range(WIDTH))
        return flip(state.position) + flip(state.mask)

    def heuristic(self, state: C4State) -> float:
        """Window count for the side to move: 3 of own + an empty cell +5, 2 + 2 empty +2, the
        opponent's 3 + empty -4, own stones in the centre column +3 each."""
        own, theirs = state.position, state.position ^ state.mask
        score = 3 * (own & CENTRE_COLUMN).bit_count()
        for w in WINDOWS:
            a, b = (own & w).bit_count(), (theirs & w).bit_count()
            if b == 0:
                score += 5 if a == 3 else 2 if a == 2 else 0
            elif a == 0 and b == 3:
                score -= 4
        return float(score)

    # --- text notation and drawing -----------------------------------------------------------

    def from_moves(self, moves: str) -> C4State:
        """The position after a history of columns "4453" (1-7; "" is the start); ValueError names the ply."""
        state = self.initial()
        for ply, char in enumerate(moves, 1):
            if char not in "1234567":
                raise ValueError(f"Invalid moves {moves!r}: ply {ply} is {char!r}, not a column 1-7")
            column = int(char) - 1
            if state.result is not None:
                raise ValueError(f"Invalid moves {moves!r}: ply {ply} plays column {char} after the game ended")
            if state.mask & TOP[column]:
                raise ValueError(f"Invalid moves {moves!r}: ply {ply} plays column {char}, which is full")
            state = self.play(state, column)
        return state

    def grid(self, state: C4State) -> np.ndarray:
        """int32 [6, 7], row 0 on top: 0 empty, 1 the first player's stones (X), 2 the second's (O)."""
        planes = self.planes([state])[0].astype(np.int32)
        first, second = (planes[..., 0], planes[..., 1]) if state.ply % 2 == 0 else (planes[..., 1], planes[..., 0])
        return first + 2 * second

    def from_grid(self, grid: np.ndarray) -> C4State:
        """The state of a grid (as `grid` draws it); the side to move follows from the stone counts."""
        grid = np.asarray(grid)
        first = sum(1 << int(CELL_BITS[r, c]) for r, c in zip(*np.nonzero(grid == 1)))
        second = sum(1 << int(CELL_BITS[r, c]) for r, c in zip(*np.nonzero(grid == 2)))
        ply = int(np.count_nonzero(grid))
        mask = first | second
        position = first if ply % 2 == 0 else second
        result = -1.0 if aligned(position ^ mask) else (0.0 if ply == HEIGHT * WIDTH else None)
        return C4State(position, mask, ply, result)

    def render(self, state: C4State, mark: int | None = None) -> str:
        """Text board, X moved first, `*` where `mark` (0-based column) would land."""
        grid = self.grid(state)
        if mark is not None:
            grid[HEIGHT - 1 - bin(state.mask & COLUMN[mark]).count("1"), mark] = 3
        rows = [" ".join(".XO*"[v] for v in row) for row in grid]
        return "\n".join([*rows, "1 2 3 4 5 6 7"])


GAMES = {"connect4": ConnectFour}


def make_game(name: str) -> Game:
    if name not in GAMES:
        raise ValueError(f"Unknown game. Received: game={name!r}; known games: {sorted(GAMES)}")
    return GAMES[name]()
