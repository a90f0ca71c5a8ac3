"""Captioning's bench: the demo preset on the generated scenes (no download), against an image-blind baseline.

The baseline is the best of the most frequent training captions repeated for every test image.
"""

from __future__ import annotations

from core.bench import BenchSpec
from core.data import decode_resize_images


def bare_model(pipeline, raw_inputs):
    """serving_default's neural work: the whole greedy loop (the encoder once, the decoder once per word)
    on decoded, resized images; decoding the bytes and joining the words are the endpoint's overhead."""
    size = pipeline.config.image_size
    images = decode_resize_images(pipeline.encode_request(raw_inputs)["image_bytes"], (size, size))
    decoder = pipeline.caption_decoder()
    return (lambda x: decoder.greedy(x)[0]), images


def caption_examples(pipeline, n: int = 5) -> list[dict[str, str]]:
    """Test images' first references beside the greedy and best beam captions, for the reports."""
    examples = pipeline.test_examples(n)
    raw = pipeline.sample_inputs(len(examples))
    beams = pipeline.predict_beam(raw)
    return [{"test image": f"#{i}", "reference": captions[0].decode("utf-8"), "greedy": greedy,
             "beam": beam["captions"][0]}
            for i, ((_, captions), greedy, beam) in enumerate(zip(examples, pipeline.predict(raw), beams))]


BENCH = BenchSpec(
    bars=(("bleu4", ">=", 0.5), ("bleu4", ">", "baseline_bleu4")),
    bare_model=bare_model,
    examples=caption_examples,
)
