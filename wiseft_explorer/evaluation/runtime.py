"""An experiment at run time: models, weight space and eval sets, loaded lazily once and then read-only."""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from functools import cached_property
from pathlib import Path

import torch

from ..core.heads import HeadProgress, open_head_cache
from ..core.interpolate import WeightSpace, Working
from ..core.lineage import visual_digest
from ..core.loading import load_models
from ..core.models import ImageClassifier, ModelLoadError, ModelPair, parameter_count
from ..core.text_heads import TextHeads
from ..data.class_views import ClassView, class_views
from ..data.sets import EvalSet, load_eval_set
from ..data.stream import default_workers
from ..experiment.parse import load_experiment
from ..experiment.preprocessing import preprocess_source
from ..experiment.spec import DatasetSpec, Experiment
from ..store.keys import experiment_fingerprint, head_policy, set_fingerprint, zeroshot_identity

WORKING_POOL = 2  # working models per runtime, shared by every session (see borrow_working)
SHARED_BYTES = 64 * 2**20  # results every session may read (see shared_tensor), the least recently used dropped


class ExperimentRuntime:
    """Everything an experiment needs at run time; safe to share between threads and sessions (read-only)."""

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self._lock = threading.RLock()
        self._sets: dict[str, EvalSet] = {}
        self._set_fps: dict[str, str] = {}
        self._pool: list[Working] = []  # free working models, the least recently returned first
        self._pool_all: list[Working] = []  # every working model made, lent out or free (for memory_bytes)
        self._pool_made = 0  # made or being made: never more than WORKING_POOL
        self._pool_free = threading.Condition()
        self.pool_reused = 0  # borrows served by a free working model already at the alpha asked for (no lerp)
        self._shared: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self.head_progress: HeadProgress | None = None  # e.g. the CLI's progress bar

    @classmethod
    def from_path(cls, path: str | Path | None = None, endpoint: str | None = None) -> ExperimentRuntime:
        """Load an experiment file and wrap it, at one of its fine-tuned endpoints (default: the first)."""
        return cls(load_experiment(path).with_endpoint(endpoint))

    @cached_property
    def models(self) -> ModelPair:
        """Both classifiers, loaded on first use (a head being built is reported to `head_progress`)."""
        return self.load_models(self.head_progress)

    def load_models(self, progress: HeadProgress | None = None) -> ModelPair:
        """Both classifiers, loaded now if they are not yet; `progress` sees a zero-shot head being built."""
        with self._lock:  # one load however many sessions ask at once; the others wait and share it
            if "models" not in self.__dict__:
                self.__dict__["models"] = load_models(self.experiment, progress)
            return self.__dict__["models"]

    @cached_property
    def space(self) -> WeightSpace:
        """The zero-shot/fine-tuned weight line under the experiment's head policy."""
        with self._lock:
            pair = self.models
            return WeightSpace(pair.zeroshot, pair.finetuned, head_policy(self.experiment), self._text_heads())

    def _text_heads(self) -> TextHeads | None:
        """θ_α's heads from the interpolated text tower, under head policy "text" (a FLYP endpoint's, by "auto")."""
        exp, pair = self.experiment, self.models
        if head_policy(exp) != "text":
            return None
        if pair.finetuned_text is None or pair.clip.stored_head is not None:
            why = ("the zero-shot file brings its own head (and maybe no text tower)" if pair.finetuned_text
                   else f"{exp.finetuned.name if exp.finetuned else 'the fine-tuned checkpoint'} carries no text tower")
            raise ModelLoadError(f"{exp.name}: head_policy \"text\" needs both text towers, but {why}; set "
                                 "head_policy = \"interpolate\" to lerp the two heads instead")
        identity = {**zeroshot_identity(exp.zeroshot), "finetuned": self.fingerprint["finetuned"]}
        return TextHeads(pair.clip.model, pair.finetuned_text, pair.clip.tokenizer, exp.classnames, exp.templates,
                         pair.device, cache=open_head_cache(exp.cache_dir), identity=identity)

    @cached_property
    def tower_digest(self) -> str:
        """The digest of the zero-shot image tower's weights (the feature cache's key), computed once."""
        return visual_digest(self.models.zeroshot.visual.state_dict())

    @property
    def device(self) -> torch.device:
        """Where the models run."""
        return self.models.device

    def spec(self, name: str) -> DatasetSpec:
        """The dataset spec of a set by name."""
        for spec in self.experiment.eval_sets:
            if spec.name == name:
                return spec
        raise KeyError(f"no set named {name!r}; sets: {', '.join(self.set_names)}")

    @property
    def set_names(self) -> list[str]:
        """ID set, held-out ID split, then shift sets."""
        return [s.name for s in self.experiment.eval_sets]

    def eval_set(self, name: str) -> EvalSet:
        """A set's index (labels, paths or generated pixels, fair order), made once and then shared; no model needed."""
        with self._lock:
            if name not in self._sets:
                self._sets[name] = load_eval_set(self.spec(name), self.experiment.classnames, self.experiment.seed)
            return self._sets[name]

    def class_views(self, name: str) -> tuple[ClassView, ...]:
        """The shifts' views of a set's logits (the ID set of an ImageNet experiment on R's, A's, ObjectNet's
        classes: the robustness testbed's x-axis for them); none for other sets."""
        exp = self.experiment
        if name != exp.id_set.name:
            return ()
        return class_views(name, [(s.name, s.preset) for s in exp.shifts], exp.id_set.preset, self.eval_set)

    @property
    def preprocess(self) -> Callable:
        """The zero-shot model's eval transform (PIL image -> tensor)."""
        return self.models.clip.preprocess

    @property
    def workers(self) -> int:
        """Image-decoding worker processes: the experiment's setting, else from the core count."""
        return default_workers() if self.experiment.workers is None else self.experiment.workers

    def note_skipped(self, name: str, files: list[tuple[str, str]]) -> None:
        """Record files of a set found undecodable while streaming (listed with the scan's skips)."""
        with self._lock:
            skipped = self._sets[name].skipped
            known = {path for path, _ in skipped}
            skipped.extend(item for item in files if item[0] not in known)

    def model_notes(self) -> list[str]:
        """What loading the models adjusted (e.g. a head's class order), once they are loaded; never loads them."""
        return self.models.notes if self.models_loaded else []

    def data_warnings(self) -> list[str]:
        """One line per loaded set that skipped unreadable files (the set is still usable)."""
        with self._lock:
            sets = list(self._sets.values())
        return [f"{ev.name}: skipped {len(ev.skipped)} unreadable file(s), e.g. {Path(ev.skipped[0][0]).name}: "
                f"{ev.skipped[0][1]}" for ev in sets if ev.skipped]

    def new_working(self) -> Working:
        """A private working model for one session or thread."""
        return self.space.new_working()

    @contextlib.contextmanager
    def borrow_working(self, alpha: float | None = None) -> Iterator[Working]:
        """A working model from a small pool shared by every session, for one computation (at `alpha` if given).

        However many sessions come, the runtime holds at most WORKING_POOL of them. A borrower has its model to
        itself until it gives it back, and writes the alpha it needs before using it (classifier_at; done here when
        `alpha` is given), so no session ever computes at another's alpha. With `alpha`, a free model that is
        already there is preferred: its weights are exactly what the lerp would write, so the lerp is skipped.
        """
        working = self._take(alpha)
        failed = True
        try:
            if alpha is not None:
                self.classifier_at(working, alpha)
            yield working
            failed = False
        finally:
            if failed:  # the borrower may have stopped half-way through writing weights: the next one rewrites all
                working.alpha = None
            with self._pool_free:
                self._pool.append(working)
                self._pool_free.notify()

    def _take(self, alpha: float | None) -> Working:
        """A free working model (one at `alpha` first), else a new one while the pool has room, else wait."""
        with self._pool_free:
            self._pool_free.wait_for(lambda: self._pool or self._pool_made < WORKING_POOL)
            if self._pool:
                at_alpha = [i for i, w in enumerate(self._pool) if alpha is not None and w.alpha == float(alpha)]
                # No model at that alpha: rewrite the least recently returned one, so the alphas just used stay.
                working = self._pool.pop(at_alpha[-1] if at_alpha else 0)
                self.pool_reused += bool(at_alpha)
                return working
            self._pool_made += 1
        try:
            working = self.new_working()
        except BaseException:
            with self._pool_free:
                self._pool_made -= 1
                self._pool_free.notify()
            raise
        with self._pool_free:
            self._pool_all.append(working)
        return working

    def shared_tensor(self, key: Hashable, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """A result that depends on `key` alone, never on a session (e.g. an image's probabilities along the whole
        alpha grid): computed once, then handed to every session that asks; callers must not modify it.

        Kept within SHARED_BYTES, the least recently used dropped first: thirty students looking at the same
        example then pay for its curve once instead of on every alpha change.
        """
        with self._lock:
            if key in self._shared:
                self._shared.move_to_end(key)
                return self._shared[key]
        value = compute()  # outside the lock: sessions that only read must not wait for a computation
        with self._lock:
            self._shared[key] = value
            while sum(t.nbytes for t in self._shared.values()) > SHARED_BYTES and len(self._shared) > 1:
                self._shared.popitem(last=False)
        return value

    def memory_bytes(self) -> int:
        """Bytes of the tensors this runtime holds (models, weight line, pooled working models); 0 before loading."""
        if not self.models_loaded:
            return 0
        pair, seen, total = self.models, set(), 0
        tensors = [t for m in (pair.clip.model, pair.zeroshot, pair.finetuned) for t in m.state_dict().values()]
        tensors += list((pair.finetuned_text or {}).values())
        if "space" in self.__dict__:
            tensors += [*self.space.theta0.values(), *self.space.theta1.values(),
                        *(self.space.text.tensors() if self.space.text is not None else [])]
        with self._pool_free:  # lent-out working models count too: they come back to the pool
            tensors += [flat for working in self._pool_all for flat in working.flats.values()]
        with self._lock:
            tensors += list(self._shared.values())
        for tensor in tensors:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in seen:  # views share storage: count each buffer once
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        return total

    def classifier_at(self, working: Working, alpha: float) -> ImageClassifier:
        """theta_alpha written into the caller's own working model."""
        return self.space.interpolate_into(working, alpha)

    @property
    def models_loaded(self) -> bool:
        """Whether the models are in memory already (reading this never loads them)."""
        return "models" in self.__dict__

    def describe(self) -> dict[str, str]:
        """Names, sizes and device of the loaded models, as the app's sidebar lists them (loads the models)."""
        pair, exp = self.models, self.experiment
        assert exp.finetuned is not None  # load_models refuses an experiment without a fine-tuned checkpoint
        # Two different counts, labelled: the classifier that is interpolated, and the CLIP it came from.
        return {"zero-shot": f"{exp.zeroshot.name} (classifier: image tower + head "
                             f"{parameter_count(pair.zeroshot) / 1e6:.2f} M params; whole CLIP with its text tower "
                             f"{parameter_count(pair.clip.model) / 1e6:.2f} M)",
                "fine-tuned": f"{exp.finetuned.name} (classifier: image tower + head "
                              f"{parameter_count(pair.finetuned) / 1e6:.2f} M params)",
                "device": str(pair.device), "classes": str(len(exp.classnames)),
                "interpolated weights": f"{self.space.num_weights / 1e6:.2f} M", "head policy": self.space.head_policy,
                "preprocessing": self.preprocessing()}

    def preprocessing(self) -> str:
        """The eval transform in use and where it comes from (its source only, while the models are not loaded)."""
        if self.models_loaded:
            return self.models.clip.preprocess_note
        return f"from {preprocess_source(self.experiment.zeroshot)}"

    @cached_property
    def fingerprint(self) -> dict[str, str]:
        """Content identity of both models and the prompts: the model part of every cache key."""
        return experiment_fingerprint(self.experiment)

    def set_fingerprint(self, name: str) -> str:
        """Content identity of one set's images (without decoding them), computed once per runtime.

        A folder set's identity stats every file in it (seconds for ImageNet), and a runtime keeps the index it
        made of a set for its whole life, so the identity it answers with must not change under it either.
        """
        with self._lock:
            if name not in self._set_fps:
                self._set_fps[name] = set_fingerprint(self.spec(name), self.experiment.seed)
            return self._set_fps[name]
