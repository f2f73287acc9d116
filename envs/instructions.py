"""The task's words: the instruction template and the one article rule for object phrases.

Every backend (embedded world, Habitat, camera rig), the training clips and the planners build the
grounding instruction here, so the words the model was trained on are the words it is asked.
The embedded world's per-category phrases are in envs/embedded/categories.py.
"""
from __future__ import annotations

INSTRUCTION_TEMPLATE = "The camera moves across {scene}. Finally, it focuses on {object} in the centre of the frame."


def grounding_instruction(scene: str, obj: str) -> str:
    """The paper's instruction template. `obj` includes its article, e.g. 'a sofa'."""
    return INSTRUCTION_TEMPLATE.format(scene=scene, object=obj)


def with_article(words: str) -> str:
    """'a chair' / 'an armchair': an object phrase for the instruction template."""
    return f"{'an' if words[:1].lower() in 'aeiou' and words else 'a'} {words}"
