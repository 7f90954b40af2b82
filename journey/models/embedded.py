"""The embedded policy: a ~1M-parameter Llama with a character tokenizer, shipped in the package.

`--model embedded` means `EMBEDDED_PATH` everywhere. It is an ordinary transformers checkpoint:

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from journey.models.embedded import EMBEDDED_PATH
    model = AutoModelForCausalLM.from_pretrained(EMBEDDED_PATH)
    tok = AutoTokenizer.from_pretrained(EMBEDDED_PATH)

The weights come from `examples/train_embedded_policy.py` (seeded, CPU); this module holds the
pieces that script and the tests share: the tokenizer and the model config. The architecture is
Llama on purpose: with a Qwen2 config, `AutoTokenizer` swaps in Qwen2's byte-level tokenizer
and silently drops spaces and newlines (see shared/API_NOTES.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EMBEDDED_PATH = Path(__file__).resolve().parent.parent / "assets" / "embedded-policy"
EMBEDDED_NAME = "embedded"
HELDOUT_SEED = 424_242  # the problems the embedded policy is measured on; never trained on
# Each task's own embedded policy, by name: `embedded-code` is the code policy
# (examples/train_code_policy.py); `--model embedded --task code` means it (`task_model`).
EMBEDDED_CODE_PATH = EMBEDDED_PATH.parent / "embedded-code-policy"
EMBEDDED_BY_NAME = {EMBEDDED_NAME: EMBEDDED_PATH, f"{EMBEDDED_NAME}-code": EMBEDDED_CODE_PATH}
EMBEDDED_TASKS = {EMBEDDED_NAME: "arith", f"{EMBEDDED_NAME}-code": "code"}  # what each was trained on

SPECIAL_TOKENS = ["<pad>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
# Every printable ASCII character plus newline: enough for arithmetic and for the English of
# reflections ("Wait, 42 * 3 is 126, not 116."). Anything else maps to <unk>.
CHARACTERS = ["\n"] + [chr(c) for c in range(32, 127)]

# One message is `<|role|>content<|end|>`; the assistant's content and its <|end|> sit in
# {% generation %} so TRL's assistant-only loss can find them. Written on one line because
# templates render with trim_blocks.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "<|assistant|>{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}"
    "{%- else -%}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)


def resolve_model(name_or_path: str | Path) -> str:
    """The folder (or hub id) transformers loads for `--model`: `embedded` (or `embedded-code`) ->
    the shipped checkpoint's path; a GGUF file (or a folder holding one) -> its converted folder
    in the cache, converted the first time (`journey.models.gguf`); anything else as given."""
    if str(name_or_path) in EMBEDDED_BY_NAME:
        return str(EMBEDDED_BY_NAME[str(name_or_path)])
    from journey.models.gguf import local_model

    return local_model(name_or_path)


def task_model(model: str, task: str) -> str:
    """`--model embedded` means the task's own embedded policy when it has one:
    ("embedded", "code") -> "embedded-code"; ("embedded", "arith") and any other model unchanged."""
    own = f"{EMBEDDED_NAME}-{task}"
    return own if model == EMBEDDED_NAME and own in EMBEDDED_BY_NAME else model


def check_model_path(name_or_path: str, flag: str = "--model") -> None:
    """ValueError if `name_or_path` looks like a local checkpoint folder but holds none.

    A hub id ("org/name") is left for transformers to resolve; `embedded` and anything
    path-like ("./x", "/x", "~/x", "a/b/c") must be a folder with a config.json, a GGUF file or
    a folder holding one (checked here without converting it).
    """
    from journey.models.gguf import gguf_file

    name = str(name_or_path)
    file = gguf_file(name) if name not in EMBEDDED_BY_NAME else None
    if file is not None:
        if not file.is_file():
            raise ValueError(f"--model {name}: no such GGUF file")
        return
    looks_local = name in EMBEDDED_BY_NAME or name.startswith((".", "/", "~")) or name.count("/") > 1
    path = Path(resolve_model(name)).expanduser()
    if looks_local and not (path / "config.json").is_file():
        what = "no such model directory" if not path.exists() else "no checkpoint there (no config.json)"
        raise ValueError(f"{flag} {name}: {what}")


def load_failure(flag: str, name: str, err: BaseException) -> str:
    """One line for a model that did not load, naming the flag: the first line of `err`, and,
    when `name` is no folder here, that it was looked up on the hub.

        ("--model", "nope_ck", OSError("We couldn't connect to 'https://huggingface.co' ..."))
        -> "--model nope_ck: no folder nope_ck here, and not on the hub (We couldn't connect ...)"
    """
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if Path(resolve_model(name)).expanduser().exists():
        return f"{flag} {name}: cannot load ({first})"
    return f"{flag} {name}: no folder {name} here, and not on the hub ({first})"


@contextmanager
def loading(flag: str, name: str) -> Iterator[None]:
    """Turn a model load that failed for want of the model (a folder that is not there, a hub id
    that cannot be reached or does not exist: an OSError or a huggingface_hub error) into one
    ValueError naming `flag` (`load_failure`). A valid hub id is still looked up for real."""
    try:
        yield
    except Exception as err:
        if isinstance(err, OSError) or type(err).__module__.startswith("huggingface_hub"):
            raise ValueError(load_failure(flag, name, err)) from None
        raise


def build_tokenizer():
    """A character-level `PreTrainedTokenizerFast` with the chat template above."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    core.decoder = decoders.Fuse()  # without it, decode puts a space between characters
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<|end|>"
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_config(tok, hidden_size: int = 128, layers: int = 4, heads: int = 4):
    """The Llama config of the embedded policy (about 0.8M parameters at the defaults)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=3 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,  # RoPE: costs no parameters, leaves room for long thoughts
        tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
    )


def heldout_problems(n: int = 200):
    """The held-out `arith` problems (default mix) the embedded policy is measured on."""
    from journey.tasks.arith import ArithTask

    return ArithTask().generate(n, seed=HELDOUT_SEED)
