"""Exported endpoints of the text generator (stock TF ops only; decoding is one bounded tf.while_loop).

Every input is a vector with one value per prompt, or one value for all prompts:

serving_default: prompt (string [N], UTF-8), max_new_tokens (int32), temperature (float32),
                 top_k (int32), seed (int32)           -> text (string [N]: prompt + continuation)
generate:        the same inputs plus top_p (float32)  -> text
complete:        prompt only; the other settings are the config's defaults -> text

SavedModel signatures cannot have optional inputs, hence `complete` for callers that only have a
prompt, and `generate` for nucleus sampling; serving_default applies the config's top_p.

A prompt may hold up to PROMPT_CONTEXTS times the context length in characters; longer ones are
refused (InvalidArgument) rather than read whole.

Sampling: temperature 0 is greedy decoding; top_k 0 and top_p 1 switch those filters off. Each row
draws from tf.random.stateless_categorical seeded with (its seed and the step, a hash of its prompt),
so an answer depends only on its own inputs and the same request always returns the same text.
"""

from __future__ import annotations

import tensorflow as tf

from core.data import check_text_length, check_utf8

START = "\n"  # every prompt is read after a line break, so an empty prompt has a context too
PAD_ID, UNKNOWN_ID = 0, 1
# Longest prompt, in contexts: the GRU reads all of it and both keep it in the padded [N, T] batch.
PROMPT_CONTEXTS = 4


def per_prompt(value: tf.Tensor, n: tf.Tensor, name: str) -> tf.Tensor:
    """One value for all prompts or one per prompt -> one per prompt, or a clear error."""
    count = tf.size(value)
    ok = tf.logical_or(tf.equal(count, 1), tf.equal(count, n))
    check = tf.debugging.Assert(ok, [f"{name} must have 1 value or one per prompt; received", count,
                                     "values for", n, "prompts"])
    with tf.control_dependencies([check]):
        return tf.broadcast_to(tf.reshape(value, [-1]), [n])


def check_range(value: tf.Tensor, low, high, name: str) -> tf.Operation:
    ok = tf.reduce_all(tf.logical_and(value >= low, value <= high))
    return tf.debugging.Assert(ok, [f"{name} must be in [{low}, {high}]; received", value], summarize=8)


def encode_prompts(prompt: tf.Tensor, lookup) -> tuple[tf.Tensor, tf.Tensor]:
    """Prompts -> right-padded ids [N, T] of START + prompt, and their lengths [N]."""
    chars = tf.strings.unicode_split(START + prompt, "UTF-8")
    ids = chars.with_flat_values(tf.cast(lookup(chars.flat_values), tf.int32))
    return ids.to_tensor(PAD_ID), tf.cast(ids.row_lengths(), tf.int32)


def filter_logits(logits, temperature, top_k, top_p):
    """Temperature, then top-k, then top-p (nucleus) filtering; removed tokens get -inf."""
    vocab = tf.shape(logits)[-1]
    never = tf.one_hot(PAD_ID, vocab, on_value=True, off_value=False) | tf.one_hot(
        UNKNOWN_ID, vocab, on_value=True, off_value=False)
    neg_inf = tf.constant(float("-inf"), logits.dtype)
    logits = tf.where(never[None], neg_inf, logits)
    scaled = logits / tf.maximum(temperature, 1e-6)[:, None]
    ordered = tf.sort(scaled, axis=-1, direction="DESCENDING")
    k = tf.where((top_k <= 0) | (top_k > vocab), vocab, top_k)
    kth = tf.gather(ordered, k - 1, batch_dims=1)
    ordered = tf.where(tf.range(vocab)[None] < k[:, None], ordered, neg_inf)
    # Keep the most probable tokens until their mass reaches top_p (always at least the first).
    mass_before = tf.math.cumsum(tf.nn.softmax(ordered), axis=-1, exclusive=True)
    keep = tf.maximum(tf.reduce_sum(tf.cast(mass_before < top_p[:, None], tf.int32), axis=-1), 1)
    cutoff = tf.maximum(kth, tf.gather(ordered, keep - 1, batch_dims=1))
    return logits, tf.where(scaled < cutoff[:, None], neg_inf, scaled)


def sample(logits, temperature, top_k, top_p, seed, prompt_hash, step):
    """Next token per row [N] from logits [N, vocab].

    Row i draws with the stateless seed (seed[i] * 2**20 + step, hash of prompt i): its answer does not
    depend on the other rows of the batch, and different prompts with one seed do not share noise.
    """
    raw, filtered = filter_logits(logits, temperature, top_k, top_p)
    stream = tf.cast(seed, tf.int64) * 2 ** 20 + tf.cast(step, tf.int64)

    def one(args):
        row, row_stream, row_hash = args
        return tf.random.stateless_categorical(row[None], 1, seed=tf.stack([row_stream, row_hash]),
                                               dtype=tf.int32)[0, 0]

    drawn = tf.map_fn(one, (filtered, stream, prompt_hash), fn_output_signature=tf.int32)
    greedy = tf.argmax(raw, axis=-1, output_type=tf.int32)
    return tf.where(temperature <= 0.0, greedy, drawn)


def generate_ids(model, arch, context_length, ids, lengths, steps, temperature, top_k, top_p, seed,
                 prompt_hash, max_generate):
    """The continuation ids [N, max(steps)] of each prompt (row i is valid up to steps[i])."""
    n = tf.shape(ids)[0]
    total = tf.reduce_max(tf.concat([steps, [0]], 0))
    rows = tf.range(n)
    out = tf.zeros([n, total], tf.int32)

    def write(tensor, columns, tokens):
        return tf.tensor_scatter_nd_update(tensor, tf.stack([rows, columns], 1), tokens)

    if arch == "gru":
        logits, states = model.prompt_logits(ids)

        def body(step, out, logits, states):
            token = sample(logits, temperature, top_k, top_p, seed, prompt_hash, step)
            logits, states = model.step(token, states)
            return step + 1, write(out, tf.fill([n], step), token), logits, states

        loop_vars = (0, out, logits, states)
    else:
        buffer = tf.concat([ids, tf.zeros([n, total], tf.int32)], 1)

        def body(step, out, buffer):
            current = lengths + step  # where each row's next token goes
            # The last `width` tokens of each row (fewer at the start); causal attention means the
            # padding after a shorter row's end cannot change the logits read at its end.
            width = tf.minimum(tf.reduce_max(current), context_length)
            start = tf.maximum(current - width, 0)
            window = tf.gather(buffer, start[:, None] + tf.range(width)[None], batch_dims=1)
            logits = tf.gather(model(window, training=False), current - 1 - start, batch_dims=1)
            token = sample(logits, temperature, top_k, top_p, seed, prompt_hash, step)
            return step + 1, write(out, tf.fill([n], step), token), write(buffer, current, token)

        loop_vars = (0, out, buffer)
    result = tf.while_loop(lambda step, *_: step < total, body, loop_vars, maximum_iterations=max_generate)
    return result[1]


def make_generate(model, lookup, inverse, *, arch: str, context_length: int, max_generate: int):
    """(prompt, max_new_tokens, temperature, top_k, top_p, seed) -> {"text": prompt + continuation}."""
    if not 0 < max_generate < 2 ** 20:  # the step shares a 64-bit seed word with the request's seed
        raise ValueError(f"max_generate must be in [1, 2**20). Received: max_generate={max_generate}")

    def generate(prompt, max_new_tokens, temperature, top_k, top_p, seed):
        prompt = check_text_length(check_utf8(prompt, "prompt"), "prompt", PROMPT_CONTEXTS * context_length)
        n = tf.shape(prompt)[0]
        max_new_tokens = per_prompt(max_new_tokens, n, "max_new_tokens")
        temperature = per_prompt(temperature, n, "temperature")
        top_k = per_prompt(top_k, n, "top_k")
        top_p = per_prompt(top_p, n, "top_p")
        seed = per_prompt(seed, n, "seed")
        checks = [check_range(max_new_tokens, 0, max_generate, "max_new_tokens"),
                   check_range(temperature, 0.0, 1e6, "temperature"),
                   check_range(top_k, 0, 2 ** 30, "top_k"), check_range(top_p, 0.0, 1.0, "top_p")]
        with tf.control_dependencies(checks):
            ids, lengths = encode_prompts(prompt, lookup)
        prompt_hash = tf.strings.to_hash_bucket_fast(prompt, 2 ** 62)
        # An empty request answers empty: the GRU's first step cannot slice a batch of no prompts.
        new = tf.cond(n > 0, lambda: generate_ids(model, arch, context_length, ids, lengths, max_new_tokens,
                                                  temperature, top_k, top_p, seed, prompt_hash, max_generate),
                      lambda: tf.zeros([0, 0], tf.int32))
        new = tf.RaggedTensor.from_tensor(new, lengths=max_new_tokens)
        continuation = tf.strings.reduce_join(new.with_flat_values(inverse(new.flat_values)), axis=-1)
        return {"text": prompt + continuation}

    return generate


def make_endpoints(model, lookup, inverse, *, arch: str, context_length: int, max_generate: int,
                   defaults: dict) -> dict:
    """serving_default, generate and complete as tf.functions with input signatures."""
    generate = make_generate(model, lookup, inverse, arch=arch, context_length=context_length,
                             max_generate=max_generate)
    prompt = tf.TensorSpec([None], tf.string, name="prompt")
    spec = {"max_new_tokens": tf.TensorSpec([None], tf.int32, name="max_new_tokens"),
            "temperature": tf.TensorSpec([None], tf.float32, name="temperature"),
            "top_k": tf.TensorSpec([None], tf.int32, name="top_k"),
            "top_p": tf.TensorSpec([None], tf.float32, name="top_p"),
            "seed": tf.TensorSpec([None], tf.int32, name="seed")}

    def default(name, dtype):
        return tf.constant([defaults[name]], dtype)

    @tf.function(input_signature=[prompt, spec["max_new_tokens"], spec["temperature"], spec["top_k"],
                                  spec["seed"]])
    def serving_default(prompt, max_new_tokens, temperature, top_k, seed):
        return generate(prompt, max_new_tokens, temperature, top_k, default("top_p", tf.float32), seed)

    @tf.function(input_signature=[prompt, *spec.values()])
    def generate_fn(prompt, max_new_tokens, temperature, top_k, top_p, seed):
        return generate(prompt, max_new_tokens, temperature, top_k, top_p, seed)

    @tf.function(input_signature=[prompt])
    def complete(prompt):
        return generate(prompt, default("max_new_tokens", tf.int32), default("temperature", tf.float32),
                        default("top_k", tf.int32), default("top_p", tf.float32),
                        default("seed", tf.int32))

    return {"serving_default": serving_default, "generate": generate_fn, "complete": complete}
