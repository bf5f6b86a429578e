"""Hugging Face transformers backend: a chat model running in this process.

Loading is lazy: building a :class:`LocalBackend` (and reading its ``identity``) touches no
weights, so a rerun whose generations are all cached never loads the model.

Batching
    Requests are sorted by prompt length (longest first, so an out-of-memory error shows up in
    the first batch) and grouped so that a batch holds at most ``batch_size`` prompts and at most
    ``batch_tokens`` tokens of (longest prompt + max_new_tokens) x rows; prompts are left-padded.
    On an out-of-memory error the batch is halved and retried, and the smaller size is kept.
    Results are returned (or yielded) with their original request index.

What a kill can lose
    ``iter_generate`` yields each row the moment it ends (its end-of-sequence token is
    generated), while the rest of its batch is still running; the generation cache writes it
    durably at once. So a kill (SIGKILL, a crash, Ctrl-C) loses only the rows of the ONE batch
    in flight that had not ended yet: at most ``batch_size`` (TEACHER_BATCH_SIZE /
    PREDICT_BATCH_SIZE) rows and at most one batch's wall time. Rows that run to
    ``max_new_tokens`` end with their batch, so lower the batch size to lower that bound (it
    may differ on ``--resume``); every finished row survives whatever the batch size.

Decoding and reproducibility
    ``temperature == 0`` is greedy. Otherwise each request samples with its own temperature and
    top_p from its own random stream, seeded from (settings.seed, rendered prompt), with one draw
    per generated token. So a sampled answer does not depend on which other requests share its
    batch or in which order they come, given the same logits. What is *not* guaranteed: the
    logits themselves can differ in the last bits between batch compositions (padding changes
    the reduction order of bf16 kernels) or machines, which can rarely flip a near-tie token, for
    greedy decoding too. Bit-exact reuse comes from the generation cache, not from re-running.

Truncation policy (prompts longer than the limit)
    The limit is ``min(max_prompt_tokens, model context - max_new_tokens)``. A longer prompt is
    cut in the MIDDLE of its longest user message, and the cut is marked ``[...]``: system
    message, the start of the user message (the task and the entity being described) and its end
    (the answer format) survive; the dropped middle is the least essential part of the evidence
    (later reviews or history items). The result carries ``truncated_prompt=True`` and the
    cache counts it. A prompt that still cannot fit (e.g. a system message longer than the
    limit) is an error naming the request.
"""

from __future__ import annotations

import functools
import hashlib
import queue
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rrlib.errors import DeviceError

from .base import (
    TRUNCATION_MARKER,
    Closeable,
    GenerationRequest,
    GenerationResult,
    Message,
    ModelLoadError,
    PromptTooLongError,
    in_request_order,
)
from .embedded import EMBEDDED_TINY, embedded_checkpoint, embedded_gguf, model_file_sha256, tiny_checkpoint
from .memory import release_memory

EMBEDDED = "embedded"
DTYPES = ("auto", "bfloat16", "float16", "float32")
QUANTIZATIONS = ("none", "4bit", "8bit")


# ---------------------------------------------------------------------------------------
# dtype, device, quantization
# ---------------------------------------------------------------------------------------
def cpu_has_fast_bf16() -> bool:
    """AVX-512 BF16 or AMX on this CPU (Linux /proc/cpuinfo flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def resolve_dtype(dtype: str = "auto", *, for_training: bool = False):
    """``auto``: bfloat16 on CUDA with bf16 support or on CPUs with AVX-512 BF16/AMX, else
    float32. For training on CPU, ``auto`` is always float32 (bf16 master weights lose updates)."""
    import torch

    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype {dtype!r} is not one of {list(DTYPES)} (TEACHER_DTYPE).")
    if dtype != "auto":
        return getattr(torch, dtype)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if for_training:
        return torch.float32
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


@functools.cache
def bitsandbytes_cpu_support() -> str:
    """'' when the installed bitsandbytes runs 8-bit (LLM.int8) and 4-bit nf4 linear layers on
    the CPU, else why not. A real probe, once per process (~1 s): a 64x64 layer of each kind is
    quantized on the CPU and its output compared with the float layer's. bitsandbytes 0.50.2 on
    torch 2.13 (CPU) passes: it loads, generates with and LoRA-trains the embedded model in both
    (docs/scale.md, "bitsandbytes on CPU"); releases before its CPU backend (0.4x) fail here."""
    try:
        import bitsandbytes as bnb
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure means no 4/8-bit here
        return f"bitsandbytes cannot be imported ({type(e).__name__}: {e})"
    version = getattr(bnb, "__version__", "?")
    try:
        gen = torch.Generator().manual_seed(0)
        weight = torch.randn(64, 64, generator=gen) / 8
        x = torch.randn(4, 64, generator=gen)
        reference = x @ weight.T
        l8 = bnb.nn.Linear8bitLt(64, 64, bias=False, has_fp16_weights=False, threshold=6.0)
        l8.weight = bnb.nn.Int8Params(weight.clone(), requires_grad=False, has_fp16_weights=False)
        l8 = l8.to("cpu")
        l4 = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=torch.float32, quant_type="nf4")
        l4.weight = bnb.nn.Params4bit(weight.clone(), requires_grad=False, quant_type="nf4")
        l4 = l4.to("cpu")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, layer, tol in (("8-bit", l8, 0.1), ("4-bit nf4", l4, 0.3)):
                out = layer(x).float()
                err = float((out - reference).abs().max() / reference.abs().max())
                if not err < tol:
                    return (
                        f"bitsandbytes {version}: its {name} layer on the CPU is off by {err:.2f} of the float result"
                    )
    except Exception as e:  # noqa: BLE001 - whatever fails, the answer is "not on this CPU"
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        return f"bitsandbytes {version} has no working CPU backend ({type(e).__name__}: {first})"
    return ""


def quantization_problem(quantization: str) -> str:
    """'' when 4bit/8bit weights can load on this machine (a CUDA GPU, or a bitsandbytes whose
    CPU backend passes :func:`bitsandbytes_cpu_support`), else why not."""
    if quantization == "none":
        return ""
    import torch

    if torch.cuda.is_available():
        try:
            import bitsandbytes  # noqa: F401
        except Exception as e:  # noqa: BLE001
            return f"bitsandbytes cannot be imported ({type(e).__name__}: {e})"
        return ""
    return bitsandbytes_cpu_support()


def check_quantization(quantization: str, where: str = "TEACHER_QUANTIZATION") -> None:
    """4bit/8bit load through bitsandbytes: on a CUDA GPU, or on the CPU where the installed
    bitsandbytes has a CPU backend. Anything else fails here, before any work, naming the flag
    and the fix (:class:`~rrlib.errors.DeviceError`, a ModelLoadError)."""
    if quantization not in QUANTIZATIONS:
        raise ModelLoadError(f"{where}={quantization!r} is not one of {list(QUANTIZATIONS)}.")
    problem = quantization_problem(quantization)
    if problem:
        raise DeviceError(
            f"{where}={quantization!r} needs a CUDA GPU or a bitsandbytes with a CPU backend, and this "
            f"machine has neither: no CUDA GPU, and {problem}. Set {where}: none to run unquantized on "
            f"CPU, install bitsandbytes>=0.48 (its CPU backend runs 8-bit and 4-bit nf4), run on a CUDA "
            f"GPU, or use a server backend for big models."
        )


def _quantization_config(quantization: str, compute_dtype):
    """4bit: nf4 with double quantization, computing in the model's dtype (TEACHER_DTYPE /
    STUDENT_DTYPE: the paper presets' bfloat16 as the paper ran Mixtral-8x7B-Instruct; ``auto``
    resolves to bf16 on a bf16 GPU and to fp32 on a CPU without native bf16, where bf16 compute is
    emulated: nf4 prefill measured ~5x slower in bf16 than in fp32 on an AVX2-only CPU)."""
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=compute_dtype,
            bnb_4bit_use_double_quant=True,
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


# ---------------------------------------------------------------------------------------
# model location and identity
# ---------------------------------------------------------------------------------------
def _is_local(model: str) -> bool:
    return model in (EMBEDDED, EMBEDDED_TINY) or Path(model).expanduser().exists()


def _hub_commit(model: str, revision: str) -> str:
    """The commit a hub id resolves to from the local HF cache ('' when unknown)."""
    try:
        from huggingface_hub import constants

        refs = Path(constants.HF_HUB_CACHE) / f"models--{model.replace('/', '--')}" / "refs" / (revision or "main")
        return refs.read_text().strip() if refs.is_file() else ""
    except Exception:  # noqa: BLE001 - identity falls back to the revision name
        return ""


def folder_sha256(folder: Path, cache_dir: Path | None) -> str:
    """Hash of every file of a model or adapter folder (each file hash memoised by size+mtime)."""
    digest = hashlib.sha256()
    for f in sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ):
        digest.update(f.relative_to(folder).as_posix().encode())
        digest.update(model_file_sha256(f, cache_dir).encode())
    return digest.hexdigest()


def model_identity(
    model: str,
    *,
    revision: str = "",
    dtype: str = "auto",
    quantization: str = "none",
    cache_dir: Path | None = None,
    adapter: str | Path | None = None,
    backend: str = "local",
) -> dict[str, Any]:
    """Everything about a local model that changes its answers, without loading it."""
    import torch

    ident: dict[str, Any] = {
        "backend": backend,
        "name": model,
        "dtype": str(resolve_dtype(dtype)).replace("torch.", ""),
        "quantization": quantization,
    }
    if model == EMBEDDED:
        ident["name"] = "embedded:SmolLM2-135M-Instruct"
        ident["file_sha256"] = model_file_sha256(embedded_gguf(), cache_dir)
    elif model == EMBEDDED_TINY:  # its weights are built here: the hash of what was built
        ident["name"] = "embedded-tiny:random-llama"
        if cache_dir is not None:
            ident["folder_sha256"] = folder_sha256(tiny_checkpoint(cache_dir), cache_dir)
    elif Path(model).expanduser().is_file():  # a .gguf file
        ident["file_sha256"] = model_file_sha256(Path(model).expanduser(), cache_dir)
    elif Path(model).expanduser().is_dir():
        ident["folder_sha256"] = folder_sha256(Path(model).expanduser(), cache_dir)
    else:
        ident["revision"] = revision or "main"
        commit = _hub_commit(model, revision)
        if commit:
            ident["commit"] = commit
    if adapter:
        ident["adapter_sha256"] = folder_sha256(Path(adapter), cache_dir)
    ident["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    return ident


# ---------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------
def load_tokenizer(
    model: str,
    *,
    revision: str = "",
    cache_dir: Path | None = None,
    trust_remote_code: bool = False,
    padding_side: str = "left",
):
    from transformers import AutoTokenizer

    path, kwargs = _resolve_source(model, revision, cache_dir)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(_load_hint(model, e)) from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def _resolve_source(model: str, revision: str, cache_dir: Path | None) -> tuple[str, dict]:
    if model == EMBEDDED:
        if cache_dir is None:
            raise ModelLoadError("the embedded model needs a cache_dir (CACHE_DIR) to de-quantize into.")
        return str(embedded_checkpoint(cache_dir)), {}
    if model == EMBEDDED_TINY:
        if cache_dir is None:
            raise ModelLoadError("the tiny random model needs a cache_dir (CACHE_DIR) to be built in.")
        return str(tiny_checkpoint(cache_dir)), {}
    p = Path(model).expanduser()
    if p.is_file():
        if p.suffix != ".gguf":
            raise ModelLoadError(
                f"model {model!r} is a file but not a .gguf; pass a model folder, a .gguf file, a hub id or 'embedded'."
            )
        return str(p.parent), {"gguf_file": p.name}
    if p.is_dir():
        return str(p), {}
    return model, ({"revision": revision} if revision else {})


def _load_hint(model: str, error: Exception) -> str:
    where = (
        "a local folder"
        if _is_local(model)
        else "a hub id (this needs the model in the local HF cache or internet access)"
    )
    return (
        f"could not load model {model!r} ({where}): {type(error).__name__}: {error}. Pass 'embedded', "
        f"a local checkpoint folder, or a hub id that is already downloaded."
    )


def load_model_and_tokenizer(
    model: str,
    *,
    revision: str = "",
    quantization: str = "none",
    dtype: str = "auto",
    cache_dir: Path,
    trust_remote_code: bool = False,
    for_training: bool = False,
    adapter: str | Path | None = None,
):
    """(model, tokenizer) ready for generation (eval mode, left padding) or, with
    ``for_training=True``, for finetuning (fp32 on CPU, right padding, no GGUF weights).
    ``model`` is 'embedded', a local folder, a .gguf file or a hub id."""
    import torch
    from transformers import AutoModelForCausalLM

    check_quantization(quantization)
    path, kwargs = _resolve_source(model, revision, cache_dir)
    if for_training and "gguf_file" in kwargs:
        raise ModelLoadError(
            f"{model!r} is a GGUF file, whose quantized weights transformers cannot train; "
            f"de-quantize it first (see rrlib.llm.embedded.embedded_checkpoint)."
        )
    torch_dtype = resolve_dtype(dtype, for_training=for_training)
    qconfig = _quantization_config(quantization, torch_dtype)
    load_kwargs: dict[str, Any] = dict(kwargs, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    if qconfig is not None:
        load_kwargs.update(quantization_config=qconfig, device_map="auto")
    try:
        net: Any = AutoModelForCausalLM.from_pretrained(path, **load_kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(_load_hint(model, e)) from e
    tok = load_tokenizer(
        model,
        revision=revision,
        cache_dir=cache_dir,
        trust_remote_code=trust_remote_code,
        padding_side="right" if for_training else "left",
    )
    if qconfig is None and torch.cuda.is_available():
        net = net.to("cuda")
    if getattr(net.config, "pad_token_id", None) is None:
        net.config.pad_token_id = tok.pad_token_id
    if net.generation_config is not None and net.generation_config.pad_token_id is None:
        net.generation_config.pad_token_id = tok.pad_token_id
    if adapter:
        from peft import PeftModel

        net = PeftModel.from_pretrained(net, str(adapter), is_trainable=for_training)
    net.train(for_training)
    return net, tok


def model_context_length(config) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


# ---------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------
def request_seed(seed: int, prompt_text: str) -> int:
    """A request's own random stream: a function of its seed and its rendered prompt only."""
    h = hashlib.sha256(f"{seed}\x00{prompt_text}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


class PerRowSampler:
    """A logits processor that picks each row's next token itself (greedy rows: argmax;
    sampled rows: temperature + nucleus from the row's own generator, one uniform draw per step)
    and returns scores where only that token is finite, so that ``generate``'s greedy step
    keeps it. This gives per-request settings and seeds inside one batch."""

    PARTIAL_SORT = 64

    def __init__(self, temperatures: Sequence[float], top_ps: Sequence[float], seeds: Sequence[int]):
        import torch

        self.temperatures = torch.tensor([max(t, 1e-6) for t in temperatures], dtype=torch.float32)
        self.top_ps = torch.tensor(list(top_ps), dtype=torch.float32)
        self.greedy = torch.tensor([t <= 0 for t in temperatures])
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]

    def __call__(self, input_ids, scores):
        import torch

        logits = scores.float().cpu()
        rows = logits.shape[0]
        chosen = logits.argmax(dim=-1)
        sample_rows = (~self.greedy[:rows]).nonzero().flatten().tolist()
        if sample_rows:
            idx = torch.tensor(sample_rows)
            probs_all = (logits[idx] / self.temperatures[idx, None]).softmax(dim=-1)
            top_p = self.top_ps[idx, None]
            # the nucleus usually lies in the few most likely tokens: sort those only, and fall
            # back to a full sort for rows whose nucleus is wider (same result either way)
            k = min(self.PARTIAL_SORT, probs_all.shape[-1])
            probs, order = probs_all.topk(k, dim=-1)
            if bool((probs.sum(dim=-1, keepdim=True) < top_p).any()):
                probs, order = probs_all.sort(dim=-1, descending=True)
            cum = probs.cumsum(dim=-1)
            # drop tokens once the mass before them already reaches top_p (the first always stays)
            probs = probs.masked_fill((cum - probs) >= top_p, 0.0)
            cum = probs.cumsum(dim=-1)
            u = (
                torch.stack(
                    [torch.rand(1, generator=self.generators[i], dtype=torch.float64).float() for i in sample_rows]
                )
                * cum[:, -1:]
            )
            pos = torch.searchsorted(cum, u).clamp(max=cum.shape[-1] - 1).flatten()
            chosen[idx] = order[torch.arange(len(sample_rows)), pos]
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(rows), chosen.to(scores.device)] = 0.0
        return out


def _is_oom(error: BaseException) -> bool:
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    msg = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


# ---------------------------------------------------------------------------------------
# the backend
# ---------------------------------------------------------------------------------------
class LocalBackend(Closeable):
    """A transformers chat model in this process (see the module docstring for batching,
    decoding and truncation)."""

    def __init__(
        self,
        model: str = EMBEDDED,
        *,
        cache_dir: str | Path,
        revision: str = "",
        dtype: str = "auto",
        quantization: str = "none",
        batch_size: int = 64,
        batch_tokens: int = 65536,
        max_prompt_tokens: int = 2048,
        trust_remote_code: bool = False,
        adapter: str | Path | None = None,
        role: str = "teacher",
        kv_cache: str = "dynamic",
    ):
        check_quantization(quantization)
        resolve_dtype(dtype)  # validates the name
        if batch_size < 1 or batch_tokens < 1 or max_prompt_tokens < 1:
            raise ValueError("batch_size, batch_tokens and max_prompt_tokens must be >= 1.")
        if adapter and not (Path(adapter) / "adapter_config.json").is_file():
            raise ModelLoadError(f"adapter folder {adapter} has no adapter_config.json.")
        self.model_name = model
        self.cache_dir = Path(cache_dir)
        self.revision = revision
        self.dtype = dtype
        self.quantization = quantization
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.trust_remote_code = trust_remote_code
        self.adapter = adapter
        self.role = role
        if kv_cache not in ("static", "dynamic"):
            raise ValueError(f"kv_cache must be 'static' or 'dynamic', got {kv_cache!r}.")
        #: "static" preallocates the KV cache (no per-step copy); on this CPU without torch.compile
        #: it measured no faster than the default dynamic cache, so it is opt-in (falls back if
        #: the architecture cannot use it)
        self.kv_cache = kv_cache
        self._identity: dict[str, Any] | None = None
        self._model = None
        self._tokenizer = None
        self._context_length: int | None = None
        self.load_seconds = 0.0

    # lazy parts -----------------------------------------------------------------------
    @property
    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = model_identity(
                self.model_name,
                revision=self.revision,
                dtype=self.dtype,
                quantization=self.quantization,
                cache_dir=self.cache_dir,
                adapter=self.adapter,
            )
        return self._identity

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(
                self.model_name,
                revision=self.revision,
                cache_dir=self.cache_dir,
                trust_remote_code=self.trust_remote_code,
            )
            if not getattr(self._tokenizer, "chat_template", None):
                raise ModelLoadError(
                    f"model {self.model_name!r} has no chat template; use an instruct/chat "
                    f"model (the prompts are chat messages)."
                )
        return self._tokenizer

    @property
    def model(self):
        if self._model is None:
            start = time.perf_counter()
            self._model, tok = load_model_and_tokenizer(
                self.model_name,
                revision=self.revision,
                quantization=self.quantization,
                dtype=self.dtype,
                cache_dir=self.cache_dir,
                trust_remote_code=self.trust_remote_code,
                adapter=self.adapter,
            )
            if self._tokenizer is None:
                self._tokenizer = tok
            self.load_seconds = time.perf_counter() - start
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def context_length(self) -> int:
        from transformers import AutoConfig

        if self._model is not None:
            return model_context_length(self._model.config)
        if self._context_length is None:  # read once: prompt fitting asks for it per prompt
            path, kwargs = _resolve_source(self.model_name, self.revision, self.cache_dir)
            self._context_length = model_context_length(
                AutoConfig.from_pretrained(path, trust_remote_code=self.trust_remote_code, **kwargs)
            )
        return self._context_length

    # prompts --------------------------------------------------------------------------
    def render(self, messages: Sequence[Message]) -> str:
        return self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
        )

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return len(self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"])

    def fit_prompt(self, messages: Sequence[Message], limit: int) -> tuple[list[Message], bool]:
        """Apply the truncation policy: (messages that fit in ``limit`` tokens, truncated?)."""
        msgs = [dict(m) for m in messages]
        n = self.count_tokens(msgs)
        if n <= limit:
            return msgs, False
        users = [i for i, m in enumerate(msgs) if m.get("role") == "user"]
        if not users:
            raise PromptTooLongError(
                f"prompt of {n} tokens exceeds the limit of {limit} and has no user message to shorten."
            )
        target = max(users, key=lambda i: len(msgs[i]["content"]))
        ids = self.tokenizer(msgs[target]["content"], add_special_tokens=False)["input_ids"]
        margin = 4
        for _ in range(6):
            keep = (
                len(ids)
                - (n - limit)
                - len(self.tokenizer(TRUNCATION_MARKER, add_special_tokens=False)["input_ids"])
                - margin
            )
            if keep < 2:
                raise PromptTooLongError(
                    f"prompt of {n} tokens cannot fit the limit of {limit} tokens (MAX_PROMPT_TOKENS or the model "
                    f"context minus max_new_tokens) even after cutting its longest user message; shorten the "
                    f"system message or raise MAX_PROMPT_TOKENS."
                )
            head = keep // 2 + keep % 2
            tail = keep // 2
            content = (
                self.tokenizer.decode(ids[:head])
                + TRUNCATION_MARKER
                + (self.tokenizer.decode(ids[-tail:]) if tail else "")
            )
            trial = [dict(m) for m in msgs]
            trial[target]["content"] = content
            if self.count_tokens(trial) <= limit:
                return trial, True
            margin *= 2
        raise PromptTooLongError(f"could not cut a prompt of {n} tokens to {limit} tokens.")

    # generation -----------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return in_request_order(len(requests), self.iter_generate(requests))

    def iter_generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, GenerationResult]]:
        """Yield ``(request index, result)`` as each batch finishes (longest prompts first)."""
        if not requests:
            return
        context = self.context_length
        prepared = []  # (index, prompt text, n tokens, truncated, request)
        for i, req in enumerate(requests):
            limit = min(self.max_prompt_tokens, context - req.settings.max_new_tokens)
            if limit < 1:
                raise PromptTooLongError(
                    f"request {i} ({req.tag or req.template}): max_new_tokens="
                    f"{req.settings.max_new_tokens} leaves no room in the model context of "
                    f"{context} tokens."
                )
            try:
                msgs, truncated = self.fit_prompt(req.messages, limit)
            except PromptTooLongError as e:
                raise PromptTooLongError(f"request {i} ({req.tag or req.template}): {e}") from e
            text = self.render(msgs)
            n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            prepared.append((i, text, n, truncated, req))
        # same max_new_tokens in one batch (one generate call); longest prompts first
        prepared.sort(key=lambda p: (p[4].settings.max_new_tokens, p[4].settings.repetition_penalty, -p[2], p[0]))
        _ = self.model  # load now (lazy), after the prompts are known to be valid
        pos = 0
        yielded: set[int] = set()
        while pos < len(prepared):
            first = prepared[pos]
            new = first[4].settings.max_new_tokens
            rows = max(1, min(self.batch_size, self.batch_tokens // (first[2] + new)))
            penalty = first[4].settings.repetition_penalty
            batch = [
                p
                for p in prepared[pos : pos + rows]
                if p[4].settings.max_new_tokens == new and p[4].settings.repetition_penalty == penalty
            ]
            try:
                for j, result in self._stream_batch(batch):  # each row as soon as it ends
                    yielded.add(batch[j][0])
                    yield batch[j][0], result
            except Exception as e:  # noqa: BLE001 - only memory errors are retried
                if not _is_oom(e) or len(batch) == 1:
                    raise
                self.batch_size = max(1, len(batch) // 2)
                self._free_memory()
                # rows already yielded are kept; the rest of the batch is retried smaller
                prepared = prepared[:pos] + [p for p in prepared[pos:] if p[0] not in yielded]
                continue
            pos += len(batch)

    def _stream_batch(self, batch) -> Iterator[tuple[int, GenerationResult]]:
        """Run one batch in a worker thread; yield ``(row in batch, result)`` as each row ends.
        If the consumer stops early, the batch is stopped at its next token and joined."""
        rows: queue.Queue = queue.Queue()
        stop = threading.Event()
        done = object()

        def work() -> None:
            try:
                self._generate_batch(batch, on_row=lambda j, r: rows.put((j, r)), stop=stop)
                rows.put(done)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                rows.put(e)

        worker = threading.Thread(target=work, name="rrlib-generate", daemon=True)
        worker.start()
        try:
            while True:
                item = rows.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

    def _free_memory(self) -> None:
        release_memory()

    def close(self) -> None:
        """Drop the loaded model (a later use loads it again) and hand its memory back."""
        if self._model is not None:
            self._model = None
            release_memory()

    def _generate_batch(self, batch, on_row=None, stop: threading.Event | None = None) -> list[GenerationResult]:
        """Generate one batch; ``on_row(j, result)`` is called for row ``j`` as soon as it ends
        (during generation, from :class:`RowEnds`) and, for rows still running at the end, after
        it. Setting ``stop`` ends the generation at the next token (results are then partial)."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        model, tok = self.model, self.tokenizer
        texts = [p[1] for p in batch]
        settings = [p[4].settings for p in batch]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        eos = {tok.eos_token_id}
        gen_eos = getattr(model.generation_config, "eos_token_id", None)
        eos.update(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        eos.discard(None)
        config = GenerationConfig(
            max_new_tokens=settings[0].max_new_tokens,
            do_sample=False,
            eos_token_id=sorted(eos),
            pad_token_id=tok.pad_token_id,
            temperature=None,
            top_p=None,
            top_k=None,
        )
        if settings[0].repetition_penalty != 1.0:  # one value per batch (batches are grouped by it)
            config.repetition_penalty = settings[0].repetition_penalty
        processors = LogitsProcessorList()
        grammars = [p[4].grammar for p in batch]
        mask = None
        if any(grammars):  # before the sampler: it picks among the tokens the grammar allows
            from .constrained import GrammarMask

            mask = GrammarMask(tok, grammars, eos)
            processors.append(mask)
        if not all(s.greedy for s in settings):
            processors.append(
                PerRowSampler(
                    [s.temperature for s in settings],
                    [s.top_p for s in settings],
                    [request_seed(s.seed, t) for s, t in zip(settings, texts)],
                )
            )
        if self.kv_cache == "static" and self.quantization == "none":
            config.cache_implementation = "static"
        start = time.perf_counter()
        prompt_len = enc["input_ids"].shape[1]

        def result(j: int, ids: list[int], seconds: float) -> GenerationResult:
            _, _, n_prompt, truncated, _ = batch[j]
            end = next((i for i, t in enumerate(ids) if t in eos), None)
            produced = ids if end is None else ids[:end]
            return GenerationResult(
                text=tok.decode(produced, skip_special_tokens=True).strip(),
                prompt_tokens=n_prompt,
                completion_tokens=len(produced) + (0 if end is None else 1),
                finish_reason="length" if end is None else "stop",
                truncated_prompt=truncated,
                seconds=seconds / len(batch),
                extra={"batch_size": len(batch)}
                | ({"grammar_error": mask.errors[j]} if mask is not None and j in mask.errors else {}),
            )

        def row_ended(j: int, ids: list[int]) -> None:
            if on_row is not None:
                on_row(j, result(j, ids, time.perf_counter() - start))

        ends = RowEnds(prompt_len, eos, row_ended, stop)
        criteria = StoppingCriteriaList([ends])
        with torch.inference_mode():
            try:
                out = model.generate(
                    **enc, generation_config=config, logits_processor=processors, stopping_criteria=criteria
                )
            except (ValueError, NotImplementedError, TypeError) as e:
                if getattr(config, "cache_implementation", None) != "static":
                    raise
                self.kv_cache = "dynamic"  # this architecture cannot use a static cache
                config.cache_implementation = None
                warnings.warn(
                    f"{self.model_name}: static KV cache unavailable ({e}); using the dynamic cache.", stacklevel=2
                )
                out = model.generate(
                    **enc, generation_config=config, logits_processor=processors, stopping_criteria=criteria
                )
        seconds = time.perf_counter() - start
        new_tokens = out[:, prompt_len:].tolist()
        results = [result(j, ids, seconds) for j, ids in enumerate(new_tokens)]
        if on_row is not None:
            for j, res in enumerate(results):
                if j not in ends.reported:
                    on_row(j, res)
        return results


class RowEnds:
    """A stopping criterion that stops nothing (unless ``stop`` is set): it reports each row of
    a batch the step it generates an end-of-sequence token, with its new token ids, so the
    row's result can be saved while the rest of the batch is still generating."""

    def __init__(self, prompt_len: int, eos: set, on_end, stop: threading.Event | None = None):
        self.prompt_len, self.eos, self.on_end, self.stop = prompt_len, eos, on_end, stop
        self.reported: set[int] = set()

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        for j, token in enumerate(input_ids[:, -1].tolist()):
            if token in self.eos and j not in self.reported:
                self.reported.add(j)
                self.on_end(j, input_ids[j, self.prompt_len :].tolist())
        halt = bool(self.stop is not None and self.stop.is_set())
        return torch.full((input_ids.shape[0],), halt, dtype=torch.bool, device=input_ids.device)
