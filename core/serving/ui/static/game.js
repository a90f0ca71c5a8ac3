// A board to play against a model, for signatures that take a game as its move history: a string
// input `moves` (1-based column numbers, "" is the start) answered by an int `move` (0 once the game
// is over), a float `value` for the side to move and a `board` text (rows of cells, then the column
// numbers; `*` marks the model's chosen move). Every turn goes through the same :predict API a
// client would call, so the board shows exactly what the model answers, errors included.
"use strict";

const Game = {
  // The signature plays a column game when its inputs are exactly `moves` (a string) and its outputs
  // include an integer `move`, a float `value` and a string `board`.
  matches(sig) {
    const inputs = Object.keys(sig.inputs || {});
    const out = sig.outputs || {};
    return inputs.length === 1 && inputs[0] === "moves" && sig.inputs.moves.dtype === "DT_STRING" &&
      out.move && INTS.has(out.move.dtype) && out.value && FLOATS.has(out.value.dtype) &&
      out.board && out.board.dtype === "DT_STRING";
  },

  // The panel: status line, board, buttons. `ask(moves)` returns {ok, status, body} from :predict.
  panel(ask) {
    const game = {moves: "", over: false, busy: false};
    const status = UI.el("p", {class: "game-status", id: "game-status", role: "status"});
    const board = UI.el("div", {class: "game-board", id: "game-board", role: "grid", "aria-label": "board"});
    const history = UI.el("code", {id: "game-moves"});
    const first = UI.el("button", {type: "button", id: "game-model-first", text: "Let the model start"});
    const reset = UI.el("button", {type: "button", id: "game-new", text: "New game"});

    const answerOf = (reply) => {
      const out = reply.body.outputs;
      const one = (v) => (Array.isArray(v) ? v[0] : v);
      return {move: Number(one(out.move)), value: Number(one(out.value)), board: String(one(out.board))};
    };

    // Board text -> rows of cells; the last line (column numbers) becomes the column headers.
    const draw = (text, lastMove) => {
      const lines = text.split("\n").filter((line) => line.trim());
      const labels = lines.pop().trim().split(/\s+/);
      const rows = lines.map((line) => line.trim().split(/\s+/));
      const columns = labels.length;
      board.style.setProperty("--columns", columns);
      const heads = labels.map((label, c) => UI.el("button", {
        type: "button", class: "game-column", text: label, title: `play column ${label}`,
        dataset: {column: String(c + 1)}, disabled: game.over || game.busy,
        onclick: () => play(String(c + 1))}));
      const cells = rows.flatMap((row, r) => row.map((cell, c) => {
        const kind = cell === "X" ? "first" : cell === "O" ? "second" : cell === "*" ? "new" : "empty";
        const classes = `game-cell ${kind}` + (lastMove && lastMove.row === r && lastMove.col === c ? " last" : "");
        return UI.el("div", {class: classes, role: "gridcell", dataset: {row: String(r), col: String(c), cell},
          onclick: () => !game.over && !game.busy && play(String(c + 1))});
      }));
      board.replaceChildren(...heads, ...cells);
      history.textContent = game.moves || "(start)";
    };

    const starAt = (text) => {
      const rows = text.split("\n").map((line) => line.trim().split(/\s+/));
      const row = rows.findIndex((cells) => cells.includes("*"));
      return row < 0 ? null : {row, col: rows[row].indexOf("*")};
    };

    // The model's stone (`*`) is drawn in the colour of the side that played it.
    const withModelStone = (text, moves) => {
      const mover = moves.length % 2 === 0 ? "X" : "O";
      return text.replace("*", mover);
    };

    const finish = (value, moverWasPerson) => {
      game.over = true;
      if (value < 0) {
        status.textContent = moverWasPerson ? "You win." : "The model wins.";
        status.dataset.result = moverWasPerson ? "person" : "model";
      } else {
        status.textContent = "Draw: the board is full.";
        status.dataset.result = "draw";
      }
    };

    const fail = (reply) => {
      UI.showError(reply.body.error || JSON.stringify(reply.body), `The model answered ${reply.status}:`);
      document.body.dataset.state = "error";
    };

    // The person's move (or none, when the model starts), then the model's answer.
    async function play(column) {
      if (game.busy || game.over) return;
      game.busy = true;
      UI.showError("");
      status.textContent = "The model is thinking\u2026";
      const tried = game.moves + (column || "");
      try {
        const reply = await ask(tried);
        if (!reply.ok) {
          status.textContent = column ? `Column ${column} cannot be played.` : "";
          fail(reply);
          return;
        }
        game.moves = tried;
        const answer = answerOf(reply);
        if (answer.move === 0) {  // the person's move ended the game
          draw(answer.board);
          finish(answer.value, true);
          return;
        }
        const shown = withModelStone(answer.board, game.moves);
        game.moves += String(answer.move);
        draw(shown, starAt(answer.board));
        const after = await ask(game.moves);  // did the model's move end it?
        if (!after.ok) {
          fail(after);
          return;
        }
        const next = answerOf(after);
        if (next.move === 0) finish(next.value, false);
        else status.textContent = `The model played column ${answer.move}; it rates your position ${next.value.toFixed(2)} (-1 lost, 1 won). Your move.`;
        document.body.dataset.state = "done";
      } finally {
        game.busy = false;
        first.disabled = game.moves !== "" || game.over;
        for (const head of board.querySelectorAll(".game-column")) head.disabled = game.over;
        board.dataset.moves = game.moves;
        board.dataset.over = String(game.over);
      }
    }

    async function newGame() {
      Object.assign(game, {moves: "", over: false, busy: false});
      delete status.dataset.result;
      UI.showError("");
      const reply = await ask("");
      if (!reply.ok) {
        fail(reply);
        return;
      }
      draw(answerOf(reply).board.replace("*", "."));
      first.disabled = false;
      board.dataset.moves = "";
      board.dataset.over = "false";
      status.textContent = "Your move: click a column, or let the model start.";
    }

    first.addEventListener("click", () => play(""));
    reset.addEventListener("click", newGame);
    newGame();
    return UI.el("section", {class: "card game", id: "game"},
      UI.el("h3", {}, "Play against the model", UI.el("span", {class: "keys", text: "moves \u2192 move \u00b7 value \u00b7 board"})),
      status, board,
      UI.el("div", {class: "actions"}, first, reset, UI.el("span", {class: "hint"}, "moves: ", history)));
  },
};
