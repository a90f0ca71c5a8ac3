"""`make demo`: train every app on its embedded data, export, reload, predict, write reports/demo.md."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path


def describe(raw) -> str:
    if isinstance(raw, (bytes, bytearray)):
        return f"<{len(raw)} bytes>"
    text = str(raw)
    return text if len(text) < 120 else text[:117] + "..."


def example_table(rows: list[dict]) -> list[str]:
    """Markdown table of {column: text} rows (test inputs, references, outputs); empty without rows."""
    if not rows:
        return []
    columns = list(rows[0])
    cell = lambda v: describe(v).replace("|", "\\|")  # noqa: E731
    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows] + [""])


def run_demo(names: list[str], *, preset: str = "demo", out: str = "saved_models",
             report: str = "reports/demo.md", runs: str = "runs") -> list[dict]:
    from core import registry
    from core.bench import spec_for

    apps = registry.apps()
    report_path = Path(report)
    report_dir = report_path.parent
    report_dir.mkdir(parents=True, exist_ok=True)
    rows, sections = [], []
    for i, name in enumerate(names, 1):
        cls = apps[name]
        start = time.monotonic()
        print(f"[demo {i}/{len(names)}] {name}: training ({preset} preset, embedded data)", flush=True)
        pipeline = cls(cls.config_class.preset(preset), Path(runs) / name)
        fit = pipeline.fit()
        metrics = pipeline.evaluate()
        path = pipeline.export(out)
        sample = pipeline.sample_inputs(1)
        answer = pipeline.predict_exported(path, sample)[0]
        examples_fn = spec_for(name).examples
        examples = examples_fn(pipeline, 5) if examples_fn else []
        seconds = time.monotonic() - start
        headline = {k: round(v, 4) for k, v in metrics.items() if "/" not in k}
        print(f"[demo {i}/{len(names)}] {name}: {json.dumps(headline)} in {seconds:.0f}s; "
              f"exported {path}", flush=True)
        print(f"    reloaded export answers {describe(sample[0])} -> "
              f"{json.dumps(answer, ensure_ascii=False)[:300]}", flush=True)
        images = []
        for png in sorted(pipeline.workdir.glob("*.png")):
            target = report_dir / name / png.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, target)
            images.append(target.relative_to(report_dir))
        rows.append({"app": name, "metrics": headline, "seconds": seconds, "export": str(path),
                     "epochs": fit["epochs_run"]})
        sections.append("\n".join([
            f"## {name}", "",
            f"- data: {fit['data'].get('source', '?')}",
            f"- trained {fit['epochs_run']} epochs in {fit['train_seconds']:.0f} s; total {seconds:.0f} s",
            f"- test metrics: `{json.dumps(headline)}`",
            f"- export: `{path}` (reloaded and compared with the live model)",
            f"- reloaded export on {describe(sample[0])}: `{json.dumps(answer, ensure_ascii=False)[:400]}`",
            "", *[f"![{p.stem}]({p.as_posix()})" for p in images], "", *example_table(examples)]))
    table = ["| app | metrics (test split) | epochs | seconds |", "|---|---|---|---|"]
    table += [f"| {r['app']} | {', '.join(f'{k} {v}' for k, v in r['metrics'].items())} | "
              f"{r['epochs']} | {r['seconds']:.0f} |" for r in rows]
    report_path.write_text("# Demo report\n\nWritten by `make demo` (`catalogue demo`), preset "
                           f"`{preset}`, embedded data only.\n\n" + "\n".join(table) + "\n\n"
                           + "\n".join(sections))
    print(f"report: {report_path}")
    return rows
