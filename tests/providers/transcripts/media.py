"""Recorded request transcripts of image and document parts, one per provider, each in its
upstream's documented format:

* OpenAI Chat Completions (API reference, "content parts"): `{type: text}`,
  `{type: image_url, image_url: {url, detail}}` (a URL or a base64 data: URL), and PDFs as
  `{type: file, file: {filename, file_data}}` with the data: URL as `file_data`. Azure OpenAI and
  OpenAI-compatible servers take the same shape.
* OpenAI Responses (API reference, input item content): `input_text`, `input_image` with
  `image_url` and the required `detail`, `input_file` with `filename` + `file_data` or `file_url`.
* Anthropic Messages (vision and PDF support guides): `image` and `document` blocks whose
  `source` is `{type: url, url}` or `{type: base64, media_type, data}`; a document's `title`.
* Gemini `generateContent` (image and document understanding guides): `inline_data` with
  `mime_type` and base64 `data`, and `file_data` with `mime_type` and `file_uri` for a URL.
"""

from __future__ import annotations

import base64
from typing import Any

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"
PNG_B64 = base64.b64encode(PNG).decode()
PNG_URL = f"data:image/png;base64,{PNG_B64}"
PDF_B64 = base64.b64encode(b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF").decode()
PDF_URL = f"data:application/pdf;base64,{PDF_B64}"
PHOTO = "https://images.example.com/photos/cat.jpg"
REPORT = "https://files.example.com/q3/report.pdf"

QUESTION = "What do these show?"
SYSTEM = "You describe pictures and documents."

# The neutral call: an image by URL (with detail), an image and a PDF as data: URLs.
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": SYSTEM},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": QUESTION},
            {"type": "image", "source": PHOTO, "detail": "high"},
            {"type": "image", "source": PNG_URL},
            {"type": "document", "source": PDF_URL, "name": "contract.pdf"},
        ],
    },
]
# A PDF by URL, for the APIs that take one.
URL_DOCUMENT: list[dict[str, Any]] = [
    {"role": "user", "content": [{"type": "document", "source": REPORT}, {"type": "text", "text": QUESTION}]}
]

CHAT_MESSAGES = [
    {"role": "system", "content": SYSTEM},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": QUESTION},
            {"type": "image_url", "image_url": {"url": PHOTO, "detail": "high"}},
            {"type": "image_url", "image_url": {"url": PNG_URL}},
            {"type": "file", "file": {"filename": "contract.pdf", "file_data": PDF_URL}},
        ],
    },
]

# case name -> (the body's fields that carry the messages for MESSAGES, and for URL_DOCUMENT)
EXPECTED: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "openai": ({"messages": CHAT_MESSAGES}, None),
    "azure": ({"messages": CHAT_MESSAGES}, None),
    "openai-responses": (
        {
            "instructions": SYSTEM,
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": QUESTION},
                        {"type": "input_image", "image_url": PHOTO, "detail": "high"},
                        {"type": "input_image", "image_url": PNG_URL, "detail": "auto"},
                        {"type": "input_file", "filename": "contract.pdf", "file_data": PDF_URL},
                    ],
                }
            ],
        },
        {
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_file", "file_url": REPORT},
                        {"type": "input_text", "text": QUESTION},
                    ],
                }
            ]
        },
    ),
    "anthropic": (
        {
            "system": SYSTEM,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": QUESTION},
                        {"type": "image", "source": {"type": "url", "url": PHOTO}},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                        },
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64},
                            "title": "contract.pdf",
                        },
                    ],
                }
            ],
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "document", "source": {"type": "url", "url": REPORT}},
                        {"type": "text", "text": QUESTION},
                    ],
                }
            ]
        },
    ),
    "gemini": (
        {
            "systemInstruction": {"parts": [{"text": SYSTEM}]},
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": QUESTION},
                        {"file_data": {"mime_type": "image/jpeg", "file_uri": PHOTO}},
                        {"inline_data": {"mime_type": "image/png", "data": PNG_B64}},
                        {"inline_data": {"mime_type": "application/pdf", "data": PDF_B64}},
                    ],
                }
            ],
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"file_data": {"mime_type": "application/pdf", "file_uri": REPORT}},
                        {"text": QUESTION},
                    ],
                }
            ]
        },
    ),
}
