"""What POST /predict accepts, and how a request becomes the model's inputs.

Two checks, in order. The pydantic model checks the shape that holds for every model (one of
``text`` / ``texts``, strings, no unknown field, no empty text); FastAPI turns its errors into a
422 naming the field. `model_inputs` then checks what depends on the model and the settings
(pairs only for pair models, the count and length limits) and raises `InputProblem`, which the app
answers in the same shape: ``{"detail": [{"type", "loc", "msg"}]}``.

    {"text": "a fine film"}
    {"texts": ["a fine film", "a dull plot"]}
    {"text": "a fine film", "text_pair": "I liked it"}          (a model trained on pairs)
    {"texts": [["a fine film", "I liked it"], ["dull", "boring"]]}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

from nlp_transfer.serving.settings import ServerSettings

__all__ = ["PredictRequest", "InputProblem", "model_inputs", "uses_pairs"]


class InputProblem(Exception):
    """A request the model or the limits cannot take: its HTTP status, where in the body, and why."""

    def __init__(self, status: int, loc: list[str | int], message: str, kind: str) -> None:
        super().__init__(message)
        self.status, self.loc, self.message, self.kind = status, loc, message, kind

    def detail(self) -> list[dict[str, Any]]:
        return [{"type": self.kind, "loc": ["body", *self.loc], "msg": self.message}]


class PredictRequest(BaseModel):
    """One text (``text``, with ``text_pair`` for pair models) or several (``texts``)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt "txt" is an error naming it, not an ignored key

    text: StrictStr | None = Field(None, description="One text to predict on.")
    text_pair: StrictStr | None = Field(None, description="The second text of the pair (models trained on pairs).")
    texts: list[StrictStr | tuple[StrictStr, StrictStr]] | None = Field(
        None, description="Several texts, or [text, text_pair] pairs for a model trained on pairs.")

    @field_validator("text")
    @classmethod
    def _text_not_empty(cls, text: str | None) -> str | None:
        if text is not None and not text.strip():
            raise ValueError("text is empty; give the text to predict on")
        return text

    @field_validator("texts")
    @classmethod
    def _texts_not_empty(cls, texts: list | None) -> list | None:
        if texts is not None and not texts:
            raise ValueError("texts is an empty list; give at least one text")
        for i, item in enumerate(texts or []):
            parts = [item] if isinstance(item, str) else list(item)
            if any(not part.strip() for part in parts):
                raise ValueError(f"texts[{i}] is empty; every text must have some content")
        return texts

    @model_validator(mode="after")
    def _one_way(self) -> PredictRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give either 'text' (one input) or 'texts' (a list of inputs), "
                             f"{'not both' if self.text is not None else 'got neither'}")
        if self.text_pair is not None and self.text is None:
            raise ValueError("'text_pair' goes with 'text'; for several pairs give 'texts': [[text, text_pair], ...]")
        return self


def uses_pairs(model: Any) -> bool:
    """Whether the model was trained on (text, text_pair) pairs (tagging models never are)."""
    return bool(getattr(model, "uses_text_pair", False)) and model.task.name != "token_classification"


def model_inputs(request: PredictRequest, model: Any, settings: ServerSettings) -> list[Any]:
    """The inputs `api._prediction_rows` takes for this request: row dicts for classifiers, strings
    for tagging models. Raises `InputProblem` for what this model or the limits cannot take."""
    from nlp_transfer.api import _text_row

    items: list[Any] = [request.text if request.text_pair is None else (request.text, request.text_pair)] \
        if request.text is not None else list(request.texts)
    where = ["text"] if request.text is not None else ["texts"]
    if len(items) > settings.max_texts_per_request:
        raise InputProblem(413, where, f"{len(items)} texts in one request; the limit is "
                                       f"{settings.max_texts_per_request} (max_texts_per_request). Split the "
                                       "request, or start the server with a higher --max-texts-per-request.",
                           "too_many_texts")
    pairs = uses_pairs(model)
    for i, item in enumerate(items):
        loc = where if request.text is not None else [*where, i]
        _check_kind(item, pairs, loc, model)
        longest = max(len(part) for part in ([item] if isinstance(item, str) else item))
        if longest > settings.max_text_chars:
            name = "text" if request.text is not None else f"texts[{i}]"
            raise InputProblem(422, loc, f"{name} has {longest} characters; the limit is {settings.max_text_chars} "
                                         "(max_text_chars). Shorten it, or start the server with a higher "
                                         "--max-text-chars.", "text_too_long")
    if model.task.name == "token_classification":
        return items
    return [_text_row(model, list(item) if isinstance(item, tuple) else item, "request") for item in items]


def _check_kind(item: Any, pairs: bool, loc: list[str | int], model: Any) -> None:
    is_pair = not isinstance(item, str)
    if is_pair and not pairs:
        field = ["text_pair"] if loc == ["text"] else loc
        kind = "a tagging model, which takes" if model.task.name == "token_classification" else "trained on"
        raise InputProblem(422, field, f"got a pair of texts, but this model is {kind} single texts; send "
                                       "one text per input (without text_pair).", "pair_not_supported")
    if pairs and not is_pair:
        field = ["text_pair"] if loc == ["text"] else loc
        raise InputProblem(422, field, "this model was trained on sentence pairs: give 'text_pair' with 'text', or "
                                       "'texts' as [[text, text_pair], ...].", "pair_required")
