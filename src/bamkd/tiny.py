"""A tiny randomly initialised BERT and its tokenizer, built locally without any download.

Tests and the embedded demo need an encoder that loads offline and trains in seconds on a CPU.
``ensure_tiny_encoder`` writes one (2 layers, hidden 64) into the cache the first time; the
tokenizer is a WordPiece vocabulary of common words plus single characters, so any ASCII text
tokenizes without unknown tokens. Weights come from a fixed seed, so every build is identical.
"""

from __future__ import annotations

import os
import shutil
import string
from pathlib import Path

from bamkd.runtime.storage import atomic_dir

TINY_VERSION = "1"

COMMON_WORDS = """
the a an and or but not no is are was were be been am do does did have has had will would can
could should may might must this that these those it its he she they we you i me him her them
us my your our their of in on at to for with from by about as into over under after before
between good bad great terrible fine awful nice poor best worst love hate like enjoy boring fun
dull happy sad film movie story plot actor acting music book food place service staff room day
night man woman child people dog cat car house city world time year week work play game team
said says told asked went came made took gave found saw knew thought wanted looked used very
really quite too so more most less least much many few some all any every each other one two
three four five six seven eight nine ten first last new old big small long short high red blue
green black white yes only also just still even again never always often
""".split()


def tiny_vocab(
    extra_words: list[str] | None = None, *, common_words: bool = True
) -> dict[str, int]:
    """Special tokens, words, then characters and their continuation forms (WordPiece fallback).

    ``common_words=False`` leaves out the built-in word list, so with no ``extra_words`` the
    tokenizer spells every word out in characters.
    """
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    seen = set(tokens)
    words = [*(COMMON_WORDS if common_words else []), *(extra_words or [])]
    for tok in [*words, *chars, *(f"##{c}" for c in chars)]:
        if tok not in seen:
            seen.add(tok)
            tokens.append(tok)
    return {tok: i for i, tok in enumerate(tokens)}


def build_tiny_encoder(
    folder: str | Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    seed: int = 0,
    words: list[str] | None = None,
) -> Path:
    """Write a tiny BERT (config, random weights, tokenizer) to ``folder``.

    ``words``: the whole words of the vocabulary; None gives the shared encoder's (common words
    and the demo's), another list a different tokenizer (``[]``: characters only), as a student
    whose tokenizer differs from its teachers' needs.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel, BertTokenizer

    from bamkd.demo import DEMO_WORDS

    vocab = tiny_vocab(DEMO_WORDS) if words is None else tiny_vocab(words, common_words=False)
    # transformers 5 has one BERT tokenizer class, the fast one (BertTokenizerFast is an alias).
    tokenizer = BertTokenizer(vocab=vocab)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 4,
        max_position_embeddings=512,
    )
    # A private RNG stream: building the encoder in the middle of a run's setup must not move
    # the run's own random state (or a run would differ depending on whether it was cached).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        # Not model.save_pretrained: once torch.distributed is up, transformers writes weights on
        # rank 0 only, and any process of a multi-process run may be the one building this folder.
        config.save_pretrained(tmp)
        weights = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
    return folder


def ensure_tiny_encoder(cache_dir: str | Path | None = None) -> Path:
    """The shared tiny encoder folder, built once per cache."""
    from bamkd.data import default_cache_dir

    base = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = base / f"bamkd-tiny-v{TINY_VERSION}"
    if not (folder / "config.json").is_file():
        os.makedirs(base, exist_ok=True)
        # Several processes may start at once (multi-process runs): each builds its own copy
        # and the first rename wins; a folder already in place is never replaced.
        tmp = base / f".{folder.name}.build{os.getpid()}"
        build_tiny_encoder(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
