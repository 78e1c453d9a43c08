"""Make ``encoder: iml_spikeformer`` valid in every ESPnet2 task that takes a speech encoder.

ESPnet 202511 has no plugin entry points: a task's encoders live in its module-level
``encoder_choices.classes`` dict, read when the task builds its argument parser and model.
We add our class there the moment a task module finishes importing (an import hook), so
it is registered before any parser exists, in every process that imports ``espnet_iml``
first (our ``espnet_iml.bin.*`` entry points do), and before ``espnet2.tasks.enh_s2t``
deep-copies the ASR choices at its own import time.

The ASR task also gets ``model: espnet_iml`` (espnet_iml.model: ESPnet's ASR model plus the
optional firing-rate loss, OUR DESIGN), added the same way to every task whose default
``model: espnet`` is ESPnetASRModel.
"""

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import List

NAME = "iml_spikeformer"
MODEL_NAME = "espnet_iml"
TASK_PREFIX = "espnet2.tasks."
# Tasks the project tests end to end; any other espnet2 task whose encoders are speech
# encoders (espnet2.asr.encoder.abs_encoder.AbsEncoder) is registered the same way.
TESTED_TASKS = ("asr", "st", "slu")


def _takes_speech_encoders(choices) -> bool:
    from espnet2.asr.encoder.abs_encoder import AbsEncoder

    base = getattr(choices, "base_type", None)
    if base is not None:
        return isinstance(base, type) and issubclass(AbsEncoder, base)
    return any(isinstance(c, type) and issubclass(c, AbsEncoder) for c in choices.classes.values())


def register_model(module: ModuleType) -> bool:
    """Add espnet_iml to ``module.model_choices`` if its "espnet" model is ESPnetASRModel."""
    choices = getattr(module, "model_choices", None)
    if choices is None or not hasattr(choices, "classes"):
        return False
    # A task whose model is ESPnetASRModel has imported its module; others need not load it.
    asr_model = sys.modules.get("espnet2.asr.espnet_model")
    if asr_model is None or choices.classes.get("espnet") is not asr_model.ESPnetASRModel:
        return False
    from espnet_iml.model import ESPnetIMLASRModel

    choices.classes[MODEL_NAME] = ESPnetIMLASRModel
    return True


def register_module(module: ModuleType) -> bool:
    """Add iml_spikeformer to ``module.encoder_choices`` if it takes speech encoders (and
    espnet_iml to its ``model_choices``, see ``register_model``)."""
    register_model(module)
    choices = getattr(module, "encoder_choices", None)
    if choices is None or not hasattr(choices, "classes") or not _takes_speech_encoders(choices):
        return False
    from espnet_iml.encoder import IMLSpikeformerEncoder

    choices.classes[NAME] = IMLSpikeformerEncoder
    return True


def register(tasks: List[str] = TESTED_TASKS) -> List[str]:
    """Import the given espnet2 task modules (e.g. "asr") and register; returns those done."""
    return [t for t in tasks if register_module(importlib.import_module(TASK_PREFIX + t))]


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        register_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith(TASK_PREFIX) or fullname.count(".") != 2:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install_import_hook() -> None:
    """Register in task modules already imported, and in every one imported later."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    for name, module in list(sys.modules.items()):
        if name.startswith(TASK_PREFIX) and module is not None:
            register_module(module)
