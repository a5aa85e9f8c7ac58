"""``moscale bench generation``: latency of the default model, text encoding included.

Figures (milliseconds, median over ``--repeats``): text encoding of a new text (cache miss) and
of a repeated one (LRU hit); for a 6 s motion, time to the first scale and to the final motion,
once with a new text ("cold": encoding included) and once with a repeated one ("cached"); the
time of every scale; throughput of batched generation; the new-text figures again with 1 and
with all of torch's CPU threads. Goals: first scale <= 30 ms and final
<= 200 ms with text encoding included, i.e. the cold figures.

Without a trained checkpoint (``--checkpoint`` or the shipped ``models/moscale-bandai.safetensors``)
the default architecture (``config/train/tokenizer.yaml`` + ``config/train/transformer.yaml``) is
timed with random weights, which costs the same; the result says which was measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from moscale_common.config import load_config
from moscale_common.paths import resource
from moscale_ros.generation.generator import DEFAULT_CHECKPOINT, MotionGenerator
from moscale_ros.models.length import LengthEstimator
from moscale_ros.models.text_encoder import TextEncoder
from moscale_ros.models.tokenizer import MotionTokenizer
from moscale_ros.models.transformer import NextScaleTransformer, count_parameters
from moscale_ros.runtime import select_device
from moscale_ros.training.tokenizer import TokenizerTrainConfig
from moscale_ros.training.transformer import TransformerTrainConfig, sized_model_configs

SECONDS = 6.0
GOAL_FIRST_MS = 30.0
GOAL_FINAL_MS = 200.0


def default_architecture_generator(device):
    """The default architecture with random weights (the codebook filled with random codes)."""

    tok_cfg = load_config(TokenizerTrainConfig, resource("config/train/tokenizer.yaml")).model
    cfg = load_config(TransformerTrainConfig, resource("config/train/transformer.yaml"))
    torch.manual_seed(0)
    tokenizer = MotionTokenizer(tok_cfg)
    with torch.no_grad():
        tokenizer.quantizer.codebook_VC.normal_()
    text_encoder = TextEncoder(dataclasses.replace(cfg.text_encoder, cache_size=1024), device=device)
    model_cfg, length_cfg = sized_model_configs(cfg, tokenizer, text_encoder.dim)
    generator = MotionGenerator(
        tokenizer,
        NextScaleTransformer(model_cfg),
        text_encoder,
        torch.zeros(263),
        torch.ones(263),
        LengthEstimator(length_cfg),
        cfg.generation,
        device,
    )
    generator.warm_up()
    return generator


def vocabulary_cost(generator: MotionGenerator, repeats: int, sync) -> dict:
    """What the vocabulary check adds to the first scale of a new text: the first scale with and
    without the check before it (interleaved, each with its own new text), and the check alone on a
    text the encoder has cached (the generator then reuses the encoding the check made)."""
    if generator.vocabulary is None:
        return {"note": "this model file has no vocabulary"}
    with_check, without_check, check_only = [], [], []
    for i in range(repeats):
        for checked in (True, False):
            text = f"a person bows and then waves, take {i} {'checked' if checked else 'plain'}"
            sync()
            tick = time.perf_counter()
            if checked:
                generator.match_skills([text])
            stream = generator.stream(text, SECONDS, i)
            next(stream)
            sync()
            (with_check if checked else without_check).append(time.perf_counter() - tick)
            stream.close()
        tick = time.perf_counter()
        generator.match_skills([text])
        check_only.append(time.perf_counter() - tick)
    return {
        "first_scale_ms_new_text_with_check": _median_ms(with_check),
        "first_scale_ms_new_text_without_check": _median_ms(without_check),
        "added_ms": round(_median_ms(with_check) - _median_ms(without_check), 2),
        "check_ms_cached_text": _median_ms(check_only),
        "goal_added_ms": 5.0,
    }


def _median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1e3, 2)


def run(args: argparse.Namespace) -> dict:

    device = select_device(getattr(args, "device", "cpu"))
    repeats = max(1, int(getattr(args, "repeats", 20)))
    path = getattr(args, "checkpoint", None) or resource(DEFAULT_CHECKPOINT)
    started = time.perf_counter()
    if getattr(args, "checkpoint", None) or path.is_file():
        generator = MotionGenerator.from_checkpoint(path, device=device)
        model = str(path)
    else:
        generator = default_architecture_generator(device)
        model = f"default architecture, random weights ({path} not found)"
    load_s = time.perf_counter() - started

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    encode_cold, encode_cached = [], []
    for i in range(repeats):
        text = f"a person raises the left hand {i} times and bows"
        with generator.inference_context():  # the threads generation uses
            sync()
            tick = time.perf_counter()
            generator.text_encoder.encode(text)
            sync()
            encode_cold.append(time.perf_counter() - tick)
            tick = time.perf_counter()
            generator.text_encoder.encode(text)
            sync()
            encode_cached.append(time.perf_counter() - tick)

    def timed(gen, text: str, seed: int) -> list[float]:
        marks = []
        for result in gen.stream(text, SECONDS, seed):
            sync()
            marks.append(result.elapsed_s)
        return marks

    cold, cached = [], []
    for i in range(repeats):
        cold.append(timed(generator, f"a person walks forward slowly then turns around, take {i}", i))
        cached.append(timed(generator, "a person walks forward slowly then turns around", i))
    # The same (new-text) figures at other CPU thread counts: the setting matters on small machines.
    by_threads = {}
    if device.type == "cpu":
        for threads in sorted({1, torch.get_num_threads()}):
            other = generator.with_config(num_threads=threads)
            runs = [timed(other, f"a person jumps forward twice, take {i} with {threads}", i) for i in range(repeats)]
            by_threads[str(threads)] = {
                "first_scale_ms_new_text": _median_ms([m[0] for m in runs]),
                "final_ms_new_text": _median_ms([m[-1] for m in runs]),
            }
    vocabulary = vocabulary_cost(generator, repeats, sync)
    num_scales = len(cold[0])
    per_scale = [_median_ms([m[k] - (m[k - 1] if k else 0.0) for m in cached]) for k in range(num_scales)]

    texts = [f"a person waves the right hand, variant {i}" for i in range(32)]
    tick = time.perf_counter()
    generator.generate_batch(texts, SECONDS, seed=0)
    batch_s = time.perf_counter() - tick

    first_cold, final_cold = _median_ms([m[0] for m in cold]), _median_ms([m[-1] for m in cold])
    return {
        "model": model,
        "device": str(device),
        "generation_threads": generator.config.num_threads or torch.get_num_threads(),
        "repeats": repeats,
        "transformer_params_m": round(count_parameters(generator.transformer) / 1e6, 2),
        "tokenizer_params_m": round(count_parameters(generator.tokenizer) / 1e6, 2),
        "text_encoder": generator.text_encoder.name,
        "refine_iterations": generator.config.iterations_for(num_scales),
        "guidance": [generator.config.guidance, generator.config.guidance_end],
        "load_and_warm_up_s": round(load_s, 2),
        "motion_seconds": SECONDS,
        "text_encode_ms_new_text": _median_ms(encode_cold),
        "text_encode_ms_cached_text": _median_ms(encode_cached),
        "first_scale_ms_new_text": first_cold,
        "final_ms_new_text": final_cold,
        "first_scale_ms_cached_text": _median_ms([m[0] for m in cached]),
        "final_ms_cached_text": _median_ms([m[-1] for m in cached]),
        "first_scale_ms_new_text_p90": round(sorted(m[0] for m in cold)[int(0.9 * (repeats - 1))] * 1e3, 2),
        "final_ms_new_text_p90": round(sorted(m[-1] for m in cold)[int(0.9 * (repeats - 1))] * 1e3, 2),
        "per_scale_ms_cached_text": per_scale,
        "batch32_motions_per_s": round(len(texts) / batch_s, 1),
        "by_cpu_threads": by_threads,
        "vocabulary_check": vocabulary,
        "goal_first_scale_ms": GOAL_FIRST_MS,
        "goal_final_ms": GOAL_FINAL_MS,
        "meets_first_scale_goal": first_cold <= GOAL_FIRST_MS,
        "meets_final_goal": final_cold <= GOAL_FINAL_MS,
    }
