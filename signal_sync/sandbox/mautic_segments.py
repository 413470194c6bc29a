"""Mautic's segments (``LeadList``) and their manual members, with the segment API's answers.

Read from ``LeadBundle/Controller/Api/ListApiController``, ``LeadAccessTrait``,
``Model/ListModel::addLead|removeLead`` and ``Entity/LeadListRepository`` (Mautic 5.1):

* ``POST /api/segments/{id}/contact/{contactId}/add``: the segment (404 ``Item was not found.``),
  then the contact (404 ``Contact not found.``; 403 without permission to edit it), then whether
  the user's segment list holds it (only *published* segments are in it: an unpublished one is a
  403, not a 404); then ``200 {"success": 1}``. Adding a member again changes nothing.
* ``POST /api/segments/{id}/contacts/add`` with ``ids`` (JSON or form): no ``ids`` → 400
  ``This is a bad request.`` (before the segment is looked up); then the segment checks as above;
  then each id on its own: ``200 {"success": 1, "details": {"<id>": {"success": true|false}}}``,
  ``false`` for an unknown contact or one the user may not edit (no 403 here). ``details`` is keyed
  by the contact's id, or by the id as sent when none was found, and written as PHP writes an array
  (a list when the keys run 0..n-1, ``[]`` when empty). There is no size limit.
* ``POST /api/segments/{id}/contact/{contactId}/remove``: the checks of the single add, then
  ``200 {"success": 1}`` whether or not the contact was a member.
* ``GET /api/segments`` → ``{"total", "lists": {"<id>": segment}}`` (``{}`` when there are none),
  ``GET /api/segments/{id}`` → ``{"list": segment}`` (unpublished ones too), 404 unknown.
* ``GET /api/contacts/{id}/segments`` → ``{"total", "lists": {"<id>": {"id", "name", "alias",
  "dateAdded", "manuallyAdded", "manuallyRemoved"}}}`` (``"lists": []`` when there are none);
  404 ``Item was not found.`` for an unknown contact.

A segment id in a path that is not digits is answered as an unknown segment, a contact id is read
as PHP's ``(int)`` reads it. Filters, segment rebuilds, owners and the ``lists:viewother``
permission are not emulated: members are only the contacts the API added, and every published
segment is the user's. A deleted contact leaves its segments (the database cascades).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from signal_sync.sandbox.journal import FORM_TYPES, SANDBOX_PREFIX, json_response
from signal_sync.sandbox.mautic_dnc import php_int
from signal_sync.sandbox.mautic_errors import (
    MSG_ACCESS_DENIED,
    MSG_BAD_REQUEST,
    MSG_CONTACT_NOT_FOUND,
    MSG_NOT_FOUND,
    errors_response,
)

SEGMENTS = "/api/segments"
SEGMENT = "/api/segments/{id:\\d+}"
SEGMENT_CONTACT_ADD = "/api/segments/{id}/contact/{contact_id}/add"
SEGMENT_CONTACT_REMOVE = "/api/segments/{id}/contact/{contact_id}/remove"
SEGMENT_CONTACTS_ADD = "/api/segments/{id}/contacts/add"
CONTACT_SEGMENTS = "/api/contacts/{id:\\d+}/segments"
ROUTE_METHODS = (
    (re.compile(r"^/api/segments$"), ("GET",)),
    (re.compile(r"^/api/segments/\d+$"), ("GET",)),
    (re.compile(r"^/api/segments/[^/]+/contact/[^/]+/(?:add|remove)$"), ("POST",)),
    (re.compile(r"^/api/segments/[^/]+/contacts/add$"), ("POST",)),
    (re.compile(r"^/api/contacts/\d+/segments$"), ("GET",)),
)
"""The emulated segment routes and their methods (another method is a 405)."""
DEFAULT_LIST_LIMIT = 30
CREATED_BY = 1
CREATED_BY_USER = "Sandbox Admin"
MINIMAL_DROPS = ("filters", "isGlobal", "isPreferenceCenter")
"""What ``minimal`` leaves out: the ``leadListDetails`` group's properties."""
MSG_IDS_NOT_EMULATED = "ids: not emulated unless a list of contact ids (numbers or strings)"
_ALIAS_DROP = re.compile(r"[^a-z0-9\s-]")
_FORM_LIST_KEY = re.compile(r"^ids\[\d*\]$")
_CANONICAL_INT = re.compile(r"^(?:0|-?[1-9][0-9]*)$")


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def clean_alias(name: str) -> str:
    """``FormModel::cleanAlias($name, '', 0, '-')`` for ASCII names: lower case, letters, digits and
    dashes for spaces."""
    return "-".join(_ALIAS_DROP.sub("", name.strip().lower()).split()) or "segment"


def php_array_key(value: Any) -> int | str:
    """A value used as a PHP array key: integers and canonical integer strings are ints."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    text = str(value)
    return int(text) if _CANONICAL_INT.match(text) else text


def php_array(items: Mapping[int | str, Any]) -> list[Any] | dict[str, Any]:
    """``json_encode`` of a PHP array: a list when its keys are exactly 0..n-1, else an object."""
    if list(items) == list(range(len(items))):
        return list(items.values())
    return {str(key): value for key, value in items.items()}


@dataclass
class Segment:
    """One segment (``LeadList``)."""

    id: int
    name: str
    alias: str
    description: str | None = None
    is_published: bool = True
    is_global: bool = True
    date_added: str = field(default_factory=_now)
    date_modified: str | None = None

    def render(self, *, minimal: bool = False) -> dict[str, Any]:
        """As the API serializes it (groups ``leadListDetails``, ``publishDetails``, ``userList``)."""
        rendered = {
            "isPublished": self.is_published,
            "dateAdded": self.date_added,
            "dateModified": self.date_modified or self.date_added,
            "createdBy": CREATED_BY,
            "createdByUser": CREATED_BY_USER,
            "modifiedBy": None,
            "modifiedByUser": " ",  # Mautic joins an absent modifier's first and last name
            "id": self.id,
            "name": self.name,
            "publicName": self.name,
            "alias": self.alias,
            "description": self.description,
            "category": None,
            "filters": [],
            "isGlobal": self.is_global,
            "isPreferenceCenter": False,
        }
        for name in MINIMAL_DROPS if minimal else ():
            del rendered[name]
        return rendered


@dataclass
class Membership:
    """One ``lead_lists_leads`` row."""

    date_added: str
    manually_added: bool = True
    manually_removed: bool = False


class SegmentStore:
    """Segments by id and their members by contact id; ``reset`` restores the segments given at creation."""

    def __init__(self, specs: Iterable[str | Mapping[str, Any]] = ()) -> None:
        self._specs = [spec if isinstance(spec, str) else dict(spec) for spec in specs]
        self.reset()

    def reset(self) -> None:
        self.segments: dict[int, Segment] = {}
        self.members: dict[int, dict[int, Membership]] = {}
        self._next_id = 1
        for spec in self._specs:
            self.create(spec)

    def create(self, spec: str | Mapping[str, Any]) -> Segment:
        """A new segment from a name, or from ``{name, alias?, description?, isPublished?, isGlobal?}``;
        ``ValueError`` names the field at fault."""
        data: Mapping[str, Any] = {"name": spec} if isinstance(spec, str) else spec
        unknown = set(data) - {"name", "alias", "description", "isPublished", "isGlobal"}
        if unknown:
            raise ValueError(f"{sorted(unknown)[0]}: not a segment field the sandbox knows")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("name: a segment needs a name")
        for flag in ("isPublished", "isGlobal"):
            if not isinstance(data.get(flag, True), bool):
                raise ValueError(f"{flag}: must be true or false")
        description = data.get("description")
        if description is not None and not isinstance(description, str):
            raise ValueError("description: must be a string")
        alias = data.get("alias") or name
        if not isinstance(alias, str):
            raise ValueError("alias: must be a string")
        segment = Segment(
            id=self._next_id,
            name=name,
            alias=self._unique_alias(clean_alias(alias)),
            description=description,
            is_published=data.get("isPublished", True),
            is_global=data.get("isGlobal", True),
        )
        self._next_id += 1
        self.segments[segment.id] = segment
        self.members[segment.id] = {}
        return segment

    def _unique_alias(self, alias: str) -> str:
        """``ListModel::saveEntity``: a taken alias gets a number appended."""
        taken = {s.alias for s in self.segments.values()}
        candidate, tag = alias, 1
        while candidate in taken:
            candidate, tag = f"{alias}{tag}", tag + 1
        return candidate

    def get(self, segment_id: Any) -> Segment | None:
        """The segment of a path's id (digits only), None for any other."""
        text = str(segment_id)
        return self.segments.get(int(text)) if text.isdigit() and text.isascii() else None

    def update(self, segment: Segment, changes: Mapping[str, Any]) -> None:
        """Publish, unpublish or rename (``PATCH /_sandbox/segments/{id}``)."""
        unknown = set(changes) - {"name", "isPublished", "isGlobal", "description"}
        if unknown:
            raise ValueError(f"{sorted(unknown)[0]}: not a segment field the sandbox changes")
        for flag, attr in (("isPublished", "is_published"), ("isGlobal", "is_global")):
            if flag in changes:
                if not isinstance(changes[flag], bool):
                    raise ValueError(f"{flag}: must be true or false")
                setattr(segment, attr, changes[flag])
        if "name" in changes:
            if not isinstance(changes["name"], str) or not changes["name"].strip():
                raise ValueError("name: a segment needs a name")
            segment.name = changes["name"]
        if "description" in changes:
            segment.description = changes["description"]
        segment.date_modified = _now()

    def delete(self, segment: Segment) -> None:
        """The segment and its memberships are gone; its id is never given again."""
        del self.segments[segment.id]
        del self.members[segment.id]

    def add(self, segment: Segment, contact_id: int) -> bool:
        """``addLead(manuallyAdded: true)``: True when a membership was created (or a manual removal
        undone), False when the contact was a member already."""
        members = self.members[segment.id]
        current = members.get(contact_id)
        if current is not None and not current.manually_removed:
            return False
        members[contact_id] = Membership(date_added=_now() if current is None else current.date_added)
        return True

    def remove(self, segment: Segment, contact_id: int) -> bool:
        """``removeLead(manuallyRemoved: true)`` of a manual membership: the row is deleted. True when
        the contact was a member."""
        return self.members[segment.id].pop(contact_id, None) is not None

    def of_contact(self, contact_id: int) -> list[tuple[Segment, Membership]]:
        """The contact's segments, by segment id, without manual removals."""
        return [
            (self.segments[segment_id], members[contact_id])
            for segment_id, members in sorted(self.members.items())
            if contact_id in members and not members[contact_id].manually_removed
        ]

    def forget_contact(self, contact_id: int) -> None:
        """A deleted contact leaves every segment."""
        for members in self.members.values():
            members.pop(contact_id, None)

    def user_segments(self) -> dict[int, Segment]:
        """``ListModel::getUserLists`` for a user who may view every segment: the published ones."""
        return {i: s for i, s in self.segments.items() if s.is_published}

    def snapshot(self) -> list[dict[str, Any]]:
        """Every segment with its member contact ids (``/_sandbox/segments``)."""
        return [
            segment.render() | {"members": sorted(self.members[segment.id])}
            for segment in sorted(self.segments.values(), key=lambda s: s.id)
        ]


@dataclass(frozen=True)
class ContactAccess:
    """What the segment routes need from the contact side of the emulator."""

    check_api_access: Callable[[web.Request], web.Response | None]
    contact_exists: Callable[[int], bool]
    can_edit_contacts: bool
    journal: Callable[[int, web.Request, str, Segment], None]
    """``journal(contact_id, request, action, segment)``: record a membership change."""


async def read_ids(request: web.Request) -> Any:
    """``$request->request->all()['ids'] ?? null``: from a form (``ids[]=1&ids[]=2``) or a JSON body."""
    if request.content_type in FORM_TYPES:
        form = await request.post()
        listed = [v for k, v in form.items() if _FORM_LIST_KEY.match(k) and isinstance(v, str)]
        if listed:
            return listed
        value = form.get("ids")
        return value if isinstance(value, str) else None
    raw = await request.read()
    if request.content_type != "application/json" or not raw.strip():
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return body.get("ids") if isinstance(body, dict) else None


def _non_negative_int(request: web.Request, name: str, default: int) -> int | web.Response:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()):
        return errors_response(400, f"{name}: must be a non-negative integer.")
    return int(raw)


def segment_routes(segments: SegmentStore, access: ContactAccess) -> web.RouteTableDef:
    """The segment API routes over ``segments``."""
    routes = web.RouteTableDef()

    def segment_and_contact(request: web.Request) -> tuple[Segment, int] | web.Response:
        """``addLeadAction`` / ``removeLeadAction``'s checks, in their order."""
        denied = access.check_api_access(request)
        if denied is not None:
            return denied
        segment = segments.get(request.match_info["id"])
        if segment is None:
            return errors_response(404, MSG_NOT_FOUND)
        contact_id = php_int(request.match_info["contact_id"])
        if not access.contact_exists(contact_id):
            return errors_response(404, MSG_CONTACT_NOT_FOUND)
        if not access.can_edit_contacts or segment.id not in segments.user_segments():
            return errors_response(403, MSG_ACCESS_DENIED)
        return segment, contact_id

    @routes.post(SEGMENT_CONTACT_ADD)
    async def add_contact(request: web.Request) -> web.Response:
        found = segment_and_contact(request)
        if isinstance(found, web.Response):
            return found
        segment, contact_id = found
        added = segments.add(segment, contact_id)
        access.journal(contact_id, request, "segment_added" if added else "segment_unchanged", segment)
        return json_response({"success": 1})

    @routes.post(SEGMENT_CONTACT_REMOVE)
    async def remove_contact(request: web.Request) -> web.Response:
        found = segment_and_contact(request)
        if isinstance(found, web.Response):
            return found
        segment, contact_id = found
        removed = segments.remove(segment, contact_id)
        access.journal(contact_id, request, "segment_removed" if removed else "segment_not_member", segment)
        return json_response({"success": 1})

    @routes.post(SEGMENT_CONTACTS_ADD)
    async def add_contacts(request: web.Request) -> web.Response:
        denied = access.check_api_access(request)
        if denied is not None:
            return denied
        ids = await read_ids(request)
        if ids is None:
            return errors_response(400, MSG_BAD_REQUEST)
        if not isinstance(ids, list) or any(
            isinstance(i, bool) or not isinstance(i, int | float | str) for i in ids
        ):
            return errors_response(400, MSG_IDS_NOT_EMULATED)
        segment = segments.get(request.match_info["id"])
        if segment is None:
            return errors_response(404, MSG_NOT_FOUND)
        if segment.id not in segments.user_segments():
            return errors_response(403, MSG_ACCESS_DENIED)
        details: dict[int | str, Any] = {}
        for raw in ids:
            contact_id = php_int(raw)
            if not access.can_edit_contacts or not access.contact_exists(contact_id):
                details[php_array_key(raw)] = {"success": False}
                continue
            added = segments.add(segment, contact_id)
            access.journal(contact_id, request, "segment_added" if added else "segment_unchanged", segment)
            details[contact_id] = {"success": True}
        return json_response({"success": 1, "details": php_array(details)})

    @routes.get(SEGMENTS)
    async def list_segments(request: web.Request) -> web.Response:
        denied = access.check_api_access(request)
        if denied is not None:
            return denied
        for name in ("search", "where", "orderBy", "select", "order"):
            if any(key == name or key.startswith(name + "[") for key in request.query):
                return errors_response(400, f"{name}: not emulated for segments")
        limit = _non_negative_int(request, "limit", DEFAULT_LIST_LIMIT)
        start = _non_negative_int(request, "start", 0)
        if isinstance(limit, web.Response):
            return limit
        if isinstance(start, web.Response):
            return start
        minimal = request.query.get("minimal", "") not in ("", "0")
        published_only = request.query.get("published", "") not in ("", "0")
        ordered = sorted(segments.segments.values(), key=lambda s: s.id)
        found = [s for s in ordered if s.is_published or not published_only]
        page = found if limit == 0 else found[start : start + limit]
        lists = {str(s.id): s.render(minimal=minimal) for s in page}
        return json_response({"total": len(found), "lists": lists})

    @routes.get(SEGMENT)
    async def get_segment(request: web.Request) -> web.Response:
        denied = access.check_api_access(request)
        if denied is not None:
            return denied
        segment = segments.get(request.match_info["id"])
        if segment is None:
            return errors_response(404, MSG_NOT_FOUND)
        return json_response({"list": segment.render()})

    @routes.get(CONTACT_SEGMENTS)
    async def contact_segments(request: web.Request) -> web.Response:
        denied = access.check_api_access(request)
        if denied is not None:
            return denied
        contact_id = int(request.match_info["id"])
        if not access.contact_exists(contact_id):
            return errors_response(404, MSG_NOT_FOUND)
        lists = {
            segment.id: {
                "id": segment.id,
                "name": segment.name,
                "alias": segment.alias,
                "dateAdded": membership.date_added,
                "manuallyAdded": membership.manually_added,
                "manuallyRemoved": membership.manually_removed,
            }
            for segment, membership in segments.of_contact(contact_id)
        }
        return json_response({"total": len(lists), "lists": php_array(lists)})

    return routes


def add_segment_control_routes(app: web.Application, segments: SegmentStore) -> None:
    """``GET|POST /_sandbox/segments`` and ``PATCH|DELETE /_sandbox/segments/{id}``: the segments as a
    Mautic user would set them up in the UI."""

    async def body(request: web.Request) -> Any:
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None

    async def list_all(request: web.Request) -> web.Response:
        return json_response({"segments": segments.snapshot()})

    async def create(request: web.Request) -> web.Response:
        spec = await body(request)
        if not isinstance(spec, dict | str):
            problem = "body: a segment name or {name, alias, description, isPublished, isGlobal}"
            return json_response({"error": problem}, status=400)
        try:
            segment = segments.create(spec)
        except ValueError as exc:
            return json_response({"error": str(exc)}, status=400)
        return json_response({"segment": segment.render()}, status=201)

    async def change(request: web.Request) -> web.Response:
        segment = segments.get(request.match_info["id"])
        changes = await body(request)
        if segment is None:
            return json_response({"error": "no such segment"}, status=404)
        if not isinstance(changes, dict):
            return json_response({"error": "body: a JSON object"}, status=400)
        try:
            segments.update(segment, changes)
        except ValueError as exc:
            return json_response({"error": str(exc)}, status=400)
        return json_response({"segment": segment.render()})

    async def delete(request: web.Request) -> web.Response:
        segment = segments.get(request.match_info["id"])
        if segment is None:
            return json_response({"error": "no such segment"}, status=404)
        segments.delete(segment)
        return json_response({"deleted": segment.id})

    app.router.add_get(SANDBOX_PREFIX + "segments", list_all)
    app.router.add_post(SANDBOX_PREFIX + "segments", create)
    app.router.add_patch(SANDBOX_PREFIX + "segments/{id}", change)
    app.router.add_delete(SANDBOX_PREFIX + "segments/{id}", delete)
