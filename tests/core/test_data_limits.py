"""What core.data's decoding graphs refuse before any work: images whose header declares more pixels
than the limit (PNG, JPEG, GIF frames, BMP), requests whose images declare more pixels in all than
the request limit, bytes that are no image (with a printable message), and text that is not UTF-8;
and that the limits are baked into an export."""

import io
import struct
import time
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core import data

LIMIT = 1_000_000


def encoded(fmt: str, height: int, width: int, frames: int = 1, noise: bool = False) -> bytes:
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8) if noise else
                                np.full((height, width, 3), 40 * i % 255, np.uint8)) for i in range(frames)]
    buf = io.BytesIO()
    pictures[0].save(buf, format=fmt, **({"save_all": True, "append_images": pictures[1:]} if frames > 1 else {}))
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR says width x height, with a token IDAT: the size check must come first."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_declaring(height: int, width: int) -> bytes:
    """A real small JPEG with the size in its SOF0 marker rewritten."""
    raw = bytearray(encoded("JPEG", 16, 16))
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def bmp_declaring(height: int, width: int) -> bytes:
    raw = bytearray(encoded("BMP", 4, 4))
    raw[18:26] = struct.pack("<ii", width, -height)  # negative height: a top-down BMP
    return bytes(raw)


def gif_declaring(height: int, width: int) -> bytes:
    raw = bytearray(encoded("GIF", 4, 4))
    raw[6:10] = struct.pack("<HH", width, height)
    return bytes(raw)


@tf.function
def header(image):
    return tf.stack(data.image_header_size(image, LIMIT))


def decoder(max_pixels=LIMIT, max_total_pixels=None):
    return tf.function(lambda x: data.decode_resize_images(x, (8, 8), max_pixels=max_pixels,
                                                           max_total_pixels=max_total_pixels))


def decode(images, max_pixels=LIMIT, max_total_pixels=None):
    return decoder(max_pixels, max_total_pixels)(tf.constant(images))


def test_headers_give_the_size_without_decoding():
    assert header(encoded("PNG", 30, 20)).numpy().tolist() == [30, 20, 1]
    assert header(encoded("JPEG", 31, 21)).numpy().tolist() == [31, 21, 1]
    assert header(encoded("BMP", 33, 23)).numpy().tolist() == [33, 23, 1]
    assert header(encoded("GIF", 32, 22)).numpy().tolist() == [32, 22, 1]
    assert header(encoded("GIF", 34, 24, frames=5)).numpy().tolist() == [34, 24, 5]
    assert header(bmp_declaring(7000, 5000)).numpy().tolist() == [7000, 5000, 1]
    assert header(b"not an image").numpy().tolist() == [0, 0, 1]


@pytest.mark.parametrize("name, image, size", [
    ("png", png_header_only(16000, 16000), "16000x16000 pixels (256000000 pixels)"),
    ("jpeg", jpeg_declaring(60000, 50000), "50000x60000 pixels (3000000000 pixels)"),
    ("bmp", bmp_declaring(2000, 1000), "1000x2000 pixels (2000000 pixels)"),
    ("gif", gif_declaring(1001, 1000), "1000x1001 pixels (1001000 pixels)"),
], ids=["png", "jpeg", "bmp", "gif"])
def test_images_over_the_pixel_limit_are_refused_before_decoding(name, image, size):
    fn = decoder()
    fn(tf.constant([encoded("PNG", 8, 8)] * 2))  # traced here, so the clock below times the refusal alone
    started = time.perf_counter()
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        fn(tf.constant([encoded("PNG", 8, 8), image]))
    message = info.value.message
    assert f"Image too large in image_bytes: {size} is more than the limit of {LIMIT} pixels" in message, message
    assert time.perf_counter() - started < 5  # refused from the header, never decoded


def test_gif_frames_count_towards_the_limit():
    animation = encoded("GIF", 200, 250, frames=25)  # 50,000 pixels a frame, 1.25 M in all
    with pytest.raises(tf.errors.InvalidArgumentError, match="250x200 pixels in 21 frames or more"):
        decode([animation])
    assert decode([animation], max_pixels=2_000_000).shape == (1, 8, 8, 3)
    # A single-frame noisy GIF holds many 00 2C byte pairs by chance: the exact walk over its blocks
    # counts one frame, so it is not refused for frames it does not have.
    noisy = encoded("GIF", 700, 700, noise=True)
    pairs = np.sum((np.frombuffer(noisy, np.uint8)[:-1] == 0) & (np.frombuffer(noisy, np.uint8)[1:] == 0x2C))
    assert pairs * 700 * 700 > LIMIT
    assert header(noisy).numpy().tolist() == [700, 700, 1]
    assert decode([noisy]).shape == (1, 8, 8, 3)


def test_requests_over_the_total_pixel_limit_are_refused_before_decoding():
    # Header-only PNGs: decoding any of them would fail, so the refusal comes before decoding.
    legal = png_header_only(900, 900)
    started = time.perf_counter()
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        decode([legal] * 3, max_total_pixels=2_000_000)
    assert ("Request too large in image_bytes: 3 images declare 2430000 pixels in all, more than the limit of "
            "2000000 pixels per request (CATALOGUE_MAX_REQUEST_PIXELS when exporting)") in info.value.message
    assert time.perf_counter() - started < 5
    assert decode([encoded("PNG", 50, 50)] * 2, max_total_pixels=5000).shape == (2, 8, 8, 3)
    # An image over its own limit is named as such, whatever the total.
    with pytest.raises(tf.errors.InvalidArgumentError, match="Image too large in image_bytes: 16000x16000"):
        decode([encoded("PNG", 8, 8), png_header_only(16000, 16000)], max_total_pixels=100)


def test_the_request_limit_defaults_to_several_images_at_the_image_limit(monkeypatch):
    monkeypatch.delenv(data.MAX_REQUEST_PIXELS_ENV, raising=False)
    monkeypatch.setenv(data.MAX_IMAGE_PIXELS_ENV, "2500")
    assert data.max_request_pixels() == data.DEFAULT_REQUEST_IMAGES_AT_LIMIT * 2500
    monkeypatch.setenv(data.MAX_REQUEST_PIXELS_ENV, "1e4")
    assert data.max_request_pixels() == 10_000
    monkeypatch.setenv(data.MAX_REQUEST_PIXELS_ENV, "0")
    with pytest.raises(ValueError, match="positive number of pixels. Received: CATALOGUE_MAX_REQUEST_PIXELS='0'"):
        data.max_request_pixels()


def test_the_limit_is_read_at_export_and_baked_into_the_graph(tmp_path, monkeypatch):
    monkeypatch.setenv(data.MAX_IMAGE_PIXELS_ENV, "2500")
    monkeypatch.setenv(data.MAX_REQUEST_PIXELS_ENV, "6000")
    assert data.max_image_pixels() == 2500

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, image_bytes):
            return data.decode_resize_images(image_bytes, (4, 4))

    tf.saved_model.save(Module(), str(tmp_path / "model"))
    monkeypatch.delenv(data.MAX_IMAGE_PIXELS_ENV)
    monkeypatch.delenv(data.MAX_REQUEST_PIXELS_ENV)
    assert data.max_image_pixels() == data.DEFAULT_MAX_IMAGE_PIXELS
    loaded = tf.saved_model.load(str(tmp_path / "model"))
    assert loaded.serve(tf.constant([encoded("PNG", 50, 50)] * 2)).shape == (2, 4, 4, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="51x50 pixels .* limit of 2500 pixels"):
        loaded.serve(tf.constant([encoded("PNG", 50, 51)]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="7500 pixels in all, more than the limit of 6000"):
        loaded.serve(tf.constant([encoded("PNG", 50, 50)] * 3))
    monkeypatch.setenv(data.MAX_IMAGE_PIXELS_ENV, "lots")
    with pytest.raises(ValueError, match="positive number of pixels. Received: CATALOGUE_MAX_IMAGE_PIXELS='lots'"):
        data.max_image_pixels()


def test_decoded_pixels_are_those_training_sees():
    # Endpoints resize the uint8 image directly (no float copy of a full-size photo): same pixels.
    image = encoded("PNG", 37, 53, noise=True)
    served = decode([image])[0]
    trained = data.resize_square(data.decode_image(tf.constant(image)), 8)
    np.testing.assert_array_equal(served.numpy(), trained.numpy())


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00\x01binary", b"\xc3(\xa0\xa1 not utf-8", b""],
                         ids=["binary", "bad-utf8", "empty"])
def test_non_images_are_refused_with_a_printable_message(garbage):
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        decode([garbage])
    message = info.value.message  # TF's own conversion would raise UnicodeDecodeError here
    assert "Invalid image_bytes: expected encoded JPEG, PNG, GIF or BMP bytes" in message
    assert f"[of length] [{len(garbage)}]" in message


def test_text_over_the_length_limit_is_refused_naming_the_input_rows_and_limit():
    check = tf.function(lambda text: data.check_text_length(text, "prompt", 5))
    fine = ["", "abcde", "日本語ok"]  # characters, not bytes
    assert check(tf.constant(fine)).numpy().tolist() == [t.encode() for t in fine]
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        check(tf.constant(["abc", "abcdef", "ok", "x" * 9]))
    assert "Text too long in prompt: rows [1 3] hold [6 9] characters, more than the limit of 5 characters " \
        "per prompt" in info.value.message
    with pytest.raises(ValueError, match="max_chars must be positive. Received: max_chars=0"):
        data.check_text_length(tf.constant(["a"]), "prompt", 0)


def test_text_must_be_utf8_naming_the_input_and_rows():
    check = tf.function(lambda text: data.check_utf8(text, "caption"))
    valid = ["plain", "accentué", "\ufffd replacement character sent on purpose", ""]
    assert check(tf.constant(valid)).numpy().tolist() == [t.encode() for t in valid]
    invalid = [b"fine", b"bad \xff", b"fine", b"\xed\xa0\x80 surrogate", b"\xc0\xaf overlong", b"cut \xe2\x82"]
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        check(tf.constant(invalid))
    assert "Invalid caption: expected UTF-8 text; received invalid UTF-8 bytes in caption rows] [1 3 4 5]" in \
        info.value.message
