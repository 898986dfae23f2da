"""JSON Schemas (draft 2020-12) of what a model takes and answers, made from its card.

They state features.py's input contract exactly, so that a body a schema refuses is one the
model's predict refuses too: for OpenAPI documents, and for any JSON Schema validator.

    >>> card = {"name": "m", "version": "1", "missing_values": False, "classes": None,
    ...         "features": [{"name": "x", "type": "number"}]}
    >>> features_schema(card, max_rows=10, max_text_chars=100)["anyOf"][0]
    {'type': 'array', 'prefixItems': [{'type': 'number'}], 'minItems': 1, 'maxItems': 1}
"""

from modelfly.features import accepts_missing, feature_names


def value_schema(feature: dict, card: dict, max_text_chars: int) -> dict:
    """One feature's value: a number, a category of the card's or a text, null if missing
    values are taken."""
    missing = accepts_missing(feature, card)
    if feature["type"] == "number":
        return {"type": ["number", "null"] if missing else "number"}
    if feature["type"] == "text":
        return {"type": ["string", "null"] if missing else "string", "maxLength": max_text_chars}
    # Only strings are taken as categories (features.py), whatever else a card lists.
    categories = [value for value in feature["categories"] if isinstance(value, str)]
    return {"enum": [*categories, None] if missing else categories}


def features_schema(card: dict, max_rows: int, max_text_chars: int) -> dict:
    """`features`: one row, many rows, one record or many records (and, for a model that
    takes texts alone, one text or many)."""
    values = [value_schema(feature, card, max_text_chars) for feature in card["features"]]
    width = len(values)
    row = {"type": "array", "prefixItems": values, "minItems": width, "maxItems": width}
    record = {"type": "object", "properties": dict(zip(feature_names(card), values, strict=True)),
              "required": feature_names(card), "additionalProperties": False}
    shapes = [row, _many(row, max_rows), record, _many(record, max_rows)]
    if card.get("input") == "text":
        text = {"type": "string", "maxLength": max_text_chars}
        shapes += [text, _many(text, max_rows)]
    return {"anyOf": shapes}


def _many(item: dict, max_rows: int) -> dict:
    return {"type": "array", "items": item, "minItems": 1, "maxItems": max_rows}


def answer_schema(card: dict) -> dict:
    """What predict answers: one prediction per row and, for classifiers, each row's
    probability per class."""
    properties = {"model": {"const": card["name"]}, "version": {"const": card["version"]}}
    classes = card.get("classes")
    if classes:
        properties["predictions"] = {"type": "array", "items": {"enum": classes}}
        probability = {"type": "number", "minimum": 0, "maximum": 1}
        properties["probabilities"] = {"type": "array", "items": {
            "type": "object", "properties": {str(label): probability for label in classes},
            "required": [str(label) for label in classes], "additionalProperties": False}}
    else:
        properties["predictions"] = {"type": "array", "items": {"type": "number"}}
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}
