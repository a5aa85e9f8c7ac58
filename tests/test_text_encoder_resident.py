"""The text encoder's weights are resident from the start: encoding texts with new tokens does not
page in more of the mapped model file (it once grew the node ~40 MB over 1,000 distinct texts)."""

from __future__ import annotations

from moscale_ros.models.text_encoder import TextEncoder, TextEncoderConfig


def resident_file_mb() -> float:
    """File-backed resident memory of this process (``RssFile`` in ``/proc/self/status``), MiB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("RssFile:"))
    return int(line.split()[1]) / 1024


def test_encoding_new_tokens_pages_in_nothing():
    encoder = TextEncoder(TextEncoderConfig(cache_size=0))
    encoder.encode("a person stands still")
    before = resident_file_mb()
    vocabulary = encoder.tokenizer.vocab_size
    ids = list(range(1000, vocabulary, 5))  # ~6,000 tokens spread over the embedding table
    texts = [encoder.tokenizer.decode(ids[i : i + 30]) for i in range(0, len(ids), 30)]
    for start in range(0, len(texts), 16):
        encoder.encode(texts[start : start + 16])
    grown = resident_file_mb() - before
    assert grown < 3.0, f"encoding {len(ids)} new tokens paged in {grown:.1f} MB of the model file"
