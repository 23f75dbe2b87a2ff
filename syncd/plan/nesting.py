"""Nested groups, the pure part: a source's *direct* group graph in, each group's transitive
user members (and the cycles met on the way) out.

Design (issue 15, part 6):

- Connectors report a group's direct members as two sets: `Entry.members` (users) and
  `Entry.member_groups` (groups, same connector). They never flatten: only the engine knows
  which groups a flow reads, which users are in scope and what it remembered.
- Per flow and kind ``groups``, ``nested`` says what a member group means:
  ``direct`` (the default, today's behaviour: member groups are left out, only direct user
  members are synced -- never *more* access than the source grants, so it is safe),
  ``flatten`` (a group's target members are its transitive user members in scope).
- The walk follows every group the source read returned (whatever the flow's group scope
  says: a scoped-out "team" group nested in a synced "app" group still brings its users) and
  stops at groups it does not know (outside the connector's groups base), which bring nobody.
- A cycle (A member of B member of A) is not an error: every group of the cycle gets the
  union of the cycle's users, and the plan carries a note naming the groups.
- Restricting to users in scope is the planner's `member_universe` intersection, applied to
  the flattened set like to a direct one.

The graph of an incremental cycle is only a part: `syncd.cycle.nesting` completes it from the
store (`syncd.state.graph`) before calling `closure`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

EMPTY: frozenset[str] = frozenset()

#: ``nested = "preserve"``: a member group's source id in a group's members (`Item.members`,
#: `Link.members`, `Change.add`/`remove`) is written with this prefix, so one set holds users
#: and groups and everything that diffs, records and journals members works unchanged; apply
#: resolves it through the group links (`syncd.cycle.preserve`). Source anchors (UUIDs,
#: GUIDs, Graph and SCIM ids) never start with it.
GROUP_MEMBER = "group:"


def group_member(gid: str) -> str:
    return GROUP_MEMBER + gid


def member_group_id(member: str) -> str | None:
    """The group's source id when `member` names a group (`GROUP_MEMBER`), else None."""
    return member[len(GROUP_MEMBER):] if member.startswith(GROUP_MEMBER) else None


@dataclass(frozen=True)
class Edges:
    """A group's direct members as the source says them."""

    users: frozenset[str] = EMPTY
    groups: frozenset[str] = EMPTY


@dataclass
class Closure:
    """`members`: group -> transitive user members; `cycles`: each cycle's groups, sorted."""

    members: dict[str, frozenset[str]] = field(default_factory=dict)
    cycles: list[tuple[str, ...]] = field(default_factory=list)


def closure(graph: Mapping[str, Edges], roots: Iterable[str]) -> Closure:
    """Transitive user members of each root (and of every group reachable from one).

    Tarjan's strongly connected components, iterative (a deep chain of nested groups must
    not hit Python's recursion limit): components come out in reverse topological order, so
    each one's members are its own direct users plus the members of the components it
    reaches, already computed. O(groups + edges) of the reachable part."""
    out = Closure()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    counter = 0
    for root in roots:
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, _children(graph, root))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, todo = work[-1]
            if todo:
                child = todo.pop()
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, _children(graph, child)))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] != index[node]:
                continue
            component = []
            while True:
                g = stack.pop()
                on_stack.discard(g)
                component.append(g)
                if g == node:
                    break
            _settle(graph, component, out)
    return out


def _children(graph: Mapping[str, Edges], group: str) -> list[str]:
    e = graph.get(group)
    return sorted(e.groups) if e is not None else []


def _settle(graph: Mapping[str, Edges], component: list[str], out: Closure) -> None:
    members: set[str] = set()
    inside = set(component)
    for g in component:
        e = graph.get(g)
        if e is None:
            continue
        members |= e.users
        for child in e.groups:
            if child not in inside:
                members |= out.members.get(child, EMPTY)
    frozen = frozenset(members)
    for g in component:
        out.members[g] = frozen
    if len(component) > 1 or any(g in graph.get(g, Edges()).groups for g in component):
        out.cycles.append(tuple(sorted(component)))


def ancestors(parents: Mapping[str, Iterable[str]], groups: Iterable[str]) -> set[str]:
    """Every group that contains one of `groups`, directly or nested (not `groups` itself
    unless a cycle leads back). `parents`: group -> the groups it is a direct member of."""
    seen: set[str] = set()
    todo = list(groups)
    while todo:
        g = todo.pop()
        for p in parents.get(g, ()):
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return seen


def cycle_note(cycle: tuple[str, ...], names: Mapping[str, str]) -> str:
    """The plan's note for one cycle: the groups by name, and what syncd does about it."""
    shown = ", ".join(sorted(names.get(g) or g for g in cycle))
    if len(cycle) == 1:
        return (f"groups: nested group {shown} is a member of itself: ignored (its members "
                f"are its users and those of the other groups it contains)")
    return (f"groups: nested groups form a cycle ({shown}): each of them gets the users of "
            f"all of them")
