"""Azure OpenAI: Chat Completions on deployments of a resource (`azure/<deployment>`).

The format followed is Azure OpenAI's data-plane inference REST API
(`POST {endpoint}/openai/deployments/{deployment-id}/chat/completions?api-version=…`, the
resource key in an `api-key` header). Requests, answers and streams are OpenAI's Chat
Completions, so everything but the address and the key comes from `OpenAIProvider`. What
differs:

* The deployment is in the URL, so the body carries no `model` (Azure's request schema has
  none); the model Azure reports in its answer (`gpt-4o-2024-08-06`) is the one `Started`
  names, as for OpenAI, so pricing sees the real model and not the deployment's name.
* `stream_options.include_usage` is sent only to api-versions from 2024-08-01 on (the first
  to take it; older ones reject unknown arguments), so older ones stream without usage.
* A stream opens with a chunk holding only `prompt_filter_results` (no model, no choices);
  it tells a caller nothing and is skipped.
* Azure's content filter: a filtered answer ends with `finish_reason: content_filter`
  (`Finished(CONTENT_FILTER)`); a filtered prompt is an HTTP 400 with
  `error.code: content_filter`, reported as `upstream_rejected` naming the categories hit.
* A per-call `base_url` is the resource endpoint (`https://<resource>.openai.azure.com`),
  a per-call `api_key` that resource's key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from promptdeck.domain.events import Event, Failed
from promptdeck.providers.base import ProviderCall
from promptdeck.providers.http_upstream import STATUS_HINTS, UpstreamRequest
from promptdeck.providers.openai import OpenAIProvider

if TYPE_CHECKING:
    from promptdeck.config import Settings

DEFAULT_API_VERSION = "2024-10-21"
USAGE_IN_STREAMS_SINCE = "2024-08-01"  # api-versions are dates, optionally with `-preview`


class AzureOpenAIProvider(OpenAIProvider):
    hints = {
        **STATUS_HINTS,
        401: "check the resource's API key configured for it, and that the endpoint is that resource's",
        404: "check the deployment name (the part after azure/), the endpoint and the api-version",
    }

    name = "azure"
    free = False
    credential_name: str | None = "azure"
    pricing_name: str | None = "azure"

    def __init__(
        self, endpoint: str, api_key: str, *, api_version: str = DEFAULT_API_VERSION, **options: Any
    ) -> None:
        super().__init__(endpoint, api_key, **options)
        self.api_version = api_version

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureOpenAIProvider:
        return cls.configured(
            settings,
            settings.azure_openai_endpoint,
            settings.azure_openai_api_key,
            api_version=settings.azure_openai_api_version or DEFAULT_API_VERSION,
        )

    def request(self, call: ProviderCall) -> UpstreamRequest:
        upstream = super().request(call)
        body = {k: v for k, v in upstream.body.items() if k != "model"}
        if self.api_version[:10] < USAGE_IN_STREAMS_SINCE:
            body.pop("stream_options", None)
        return UpstreamRequest(upstream.url, body, upstream.headers)

    def url(self, call: ProviderCall) -> str:
        endpoint = (call.base_url or self.base_url).rstrip("/")
        endpoint = endpoint.removesuffix("/openai")  # tolerate the API's root given as the endpoint
        deployment = quote(call.model, safe="")
        return f"{endpoint}/openai/deployments/{deployment}/chat/completions?api-version={self.api_version}"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"api-key": api_key} if api_key else {}

    async def stream(self, call: ProviderCall) -> AsyncIterator[Event]:
        if not (call.base_url or self.base_url):
            yield self.failed(
                "upstream_unreachable",
                "has no endpoint: set PROMPTDECK_AZURE_OPENAI_ENDPOINT to the resource's "
                "https://<resource>.openai.azure.com, or store one with the workspace's credential",
            )
            return
        async for event in super().stream(call):
            yield event

    def status_failure(self, url: str, status: int, body: bytes) -> Failed:
        failed = super().status_failure(url, status, body)
        categories = filtered_categories(body)
        if categories is None:
            return failed
        return replace(
            failed,
            message=f"{failed.message} (Azure's content filter blocked the prompt"
            + (f": {categories}" if categories else "")
            + "; rephrase it, or change the deployment's content filter)",
        )


def filtered_categories(body: bytes) -> str | None:
    """For Azure's content-filter error (`error.code: content_filter`, with
    `innererror.content_filter_result` per category), the categories it filtered, like
    `hate (medium)`; None for any other body."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(error, dict) or error.get("code") != "content_filter":
        return None
    inner = error.get("innererror")
    results: Any = inner.get("content_filter_result") if isinstance(inner, dict) else None
    if not isinstance(results, dict):
        return ""
    hits = []
    for category, result in results.items():
        if isinstance(result, dict) and result.get("filtered"):
            severity = result.get("severity")
            hits.append(f"{category} ({severity})" if severity else str(category))
    return ", ".join(hits)
