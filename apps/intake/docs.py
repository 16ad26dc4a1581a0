"""The OpenAPI schema flattened for the server-rendered docs page (templates cannot read ``$ref``)."""

from __future__ import annotations

from typing import Any

REF_PREFIX = "#/components/schemas/"


def type_label(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).removeprefix(REF_PREFIX)
    if "allOf" in schema or "oneOf" in schema:
        return " | ".join(type_label(part) for part in schema.get("allOf", schema.get("oneOf", [])))
    if schema.get("type") == "array":
        return f"array of {type_label(schema.get('items', {}))}"
    label = str(schema.get("type", "any"))
    if schema.get("format"):
        label += f" ({schema['format']})"
    if schema.get("enum"):
        label += ": " + ", ".join(str(value) for value in schema["enum"] if value is not None)
    if schema.get("nullable"):
        label += ", nullable"
    return label


def _body_type(content: dict[str, Any]) -> str | None:
    for media in content.values():
        if "schema" in media:
            return type_label(media["schema"])
    return None


def reference(schema: dict[str, Any]) -> dict[str, Any]:
    operations = []
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            operations.append(
                {
                    "id": operation.get("operationId", f"{method}-{path}"),
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary", ""),
                    "description": operation.get("description", ""),
                    "parameters": [
                        {
                            "name": parameter["name"],
                            "where": parameter["in"],
                            "required": parameter.get("required", False),
                            "type": type_label(parameter.get("schema", {})),
                            "description": parameter.get("description", ""),
                        }
                        for parameter in operation.get("parameters", [])
                    ],
                    "request": _body_type(operation.get("requestBody", {}).get("content", {})),
                    "responses": [
                        {
                            "code": code,
                            "description": response.get("description", ""),
                            "type": _body_type(response.get("content", {})),
                        }
                        for code, response in operation.get("responses", {}).items()
                    ],
                }
            )
    components = [
        {
            "name": name,
            "description": component.get("description", ""),
            "fields": [
                {
                    "name": field,
                    "type": type_label(spec),
                    "required": field in component.get("required", []),
                    "read_only": spec.get("readOnly", False),
                    "description": spec.get("description", ""),
                }
                for field, spec in component.get("properties", {}).items()
            ],
        }
        for name, component in schema.get("components", {}).get("schemas", {}).items()
    ]
    return {"info": schema.get("info", {}), "operations": operations, "components": components}
