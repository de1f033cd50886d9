"""What the Secret and Webhook providers share: a resource that exists only in
state and is committed only after a live verification.

create, update and read (``pulumi refresh``) all run ``verified(props)``; a
failure raises, so nothing is committed and state stays as it was (refresh
reports a credential that stopped working instead of rewriting state). diff
compares only ``COMPARED_KEYS``, so nothing else (where a declaration sits in
the file, outputs) ever causes an update. delete calls nothing: Cellosign has
no API for these; the configuration rendered from state is what an
administrator applies.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from .secret_spec import UNKNOWN


class VerifiedProvider(ResourceProvider):
    COMPARED_KEYS: ClassVar[tuple[str, ...]] = ()
    REPLACE_KEYS: ClassVar[tuple[str, ...]] = ()

    def verified(self, props: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in self.COMPARED_KEYS if olds.get(k) != news.get(k)]
        unknown = any(news.get(k) == UNKNOWN for k in self.COMPARED_KEYS)
        replaces = [k for k in self.REPLACE_KEYS if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed) or unknown, replaces=replaces, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=str(props["name"]), outs=self.verified(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self.verified(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        self.verified(props)
        return ReadResult(id_=id_, outs=props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None
