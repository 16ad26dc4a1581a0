"""How a role is written inside a sentence (gate reasons, stuck reasons, the managers' messages), and how a
person's name is compared."""

from __future__ import annotations


def role_in_sentence(label: str) -> str:
    """A role's label inside a sentence, its first letter lowered ("Decision maker (economic buyer)" →
    "decision maker (economic buyer)", "Lawyer" → "lawyer"), unless its second letter is a capital too:
    an acronym or a name stays as typed ("CFO", "VP of sales")."""
    if len(label) > 1 and label[1].isupper():
        return label
    return label[:1].lower() + label[1:]


def name_key(name: str) -> str:
    """A person's name as compared: case and runs of spaces aside."""
    return " ".join(name.split()).casefold()
