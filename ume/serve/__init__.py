"""``ume serve``: a trained Reasoner + Embedder pair (and the Discriminator) as an
OpenAI-compatible HTTP service.

* ``POST /v1/embeddings`` -- items (text, an image as a ``file://`` URL, a path or base64,
  or video frames, with an instruction): the Reasoner writes each item's T-CoT (batched
  across concurrent requests), the shared input builder (:mod:`ume.inputs`) builds the
  Embedder's input, the embedding comes back; ``reasoning: false`` embeds the raw input.
  T-CoTs and embeddings go through evaluation's content-keyed caches (:mod:`ume.eval`).
  The same endpoint takes vLLM's chat form (``messages``, ``chat_template``,
  ``add_generation_prompt``) and pools the *last token* of the rendered prompt, as vLLM's
  pooling runner does: the pipeline's server Embedder (EG-RL) works against it unchanged.
* ``POST /v1/chat/completions`` -- the Reasoner or the Discriminator as a chat model.
* ``GET /health``, ``GET /v1/models``.

:mod:`ume.serve.service` holds the models, the caches and the batching worker;
:mod:`ume.serve.app` the HTTP layer (FastAPI + uvicorn), request limits and errors.
"""

from ume.serve.service import Limits, RequestError, Service

__all__ = ["Limits", "RequestError", "Service"]
