"""Who learns from whom, and how strongly when: shared by every distillation loss.

A distillation term pairs a *student* output (an exit, by depth) with its *teachers*:

- ``deepest`` (the paper): each exit learns from the final output of the same network;
- ``next`` (cascade, teacher-assistant style): each exit learns from the next deeper output, the last exit from the
  final one;
- ``peers`` (deep mutual learning): every output, the final one included, learns from all the others;
- ``external``: every output learns from a separately trained, frozen network (``network_t`` in the options).

Weights can be switched on late (``start_iter``) and ramped up linearly (``warmup_iter``).
"""

TEACHERS = ('deepest', 'next', 'peers', 'external')


def check_number(key, value, minimum=0, integer=False):
    """Raise ``ValueError`` naming ``key`` unless ``value`` is a number >= ``minimum`` (an int if ``integer``)."""
    kinds = (int, ) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        kind = 'an integer' if integer else 'a number'
        raise ValueError(f'{key} must be {kind} >= {minimum}, got {value!r}.')


def check_teacher(teacher, allowed=TEACHERS):
    if teacher not in allowed:
        raise ValueError(f'teacher must be one of {list(allowed)}, got {teacher!r}.')
    return teacher


def check_exits(exits):
    """``None`` (every exit) or a list of depths."""
    if exits is None:
        return None
    if not isinstance(exits, (list, tuple)) or any(isinstance(e, bool) or not isinstance(e, int) for e in exits):
        raise ValueError(f'exits must be a list of exit depths (or omitted for all exits), got {exits!r}.')
    return tuple(exits)


def distill_pairs(depths, teacher, exits=None):
    """The (student, teachers) pairs of a distillation term.

    Args:
        depths (sequence[int]): Output depths of the network, shallowest first, the final output last.
        teacher (str): One of :data:`TEACHERS`.
        exits (sequence[int] | None): Only these students (depths); ``None``: every student the rule gives.

    Returns:
        list[tuple[int, list]]: ``(student depth, [teacher depths])``, shallowest student first; for ``external`` the
        teacher list is ``['external']``.

    Raises:
        ValueError: ``exits`` names a depth that is not a student under this rule.
    """
    depths = list(depths)
    final = depths[-1]
    if teacher == 'deepest':
        pairs = [(d, [final]) for d in depths[:-1]]
    elif teacher == 'next':
        pairs = [(d, [depths[i + 1]]) for i, d in enumerate(depths[:-1])]
    elif teacher == 'peers':
        pairs = [(d, [p for p in depths if p != d]) for d in depths] if len(depths) > 1 else []
    elif teacher == 'external':
        pairs = [(d, ['external']) for d in depths]
    else:
        check_teacher(teacher)
    if exits is not None:
        students = [d for d, _ in pairs]
        unknown = [e for e in exits if e not in students]
        if unknown:
            raise ValueError(f'exits {unknown} are not students with teacher={teacher!r} (students: {students}).')
        pairs = [(d, t) for d, t in pairs if d in exits]
    return pairs


def weight_factor(current_iter, start_iter=0, warmup_iter=0):
    """Multiplier of a distillation weight at ``current_iter`` (1-based, as BasicSR counts).

    0 up to and including ``start_iter``, then a linear ramp reaching 1 after ``warmup_iter`` more iterations (at once
    when ``warmup_iter`` is 0). ``current_iter=None`` (outside training) gives 1.
    """
    if current_iter is None:
        return 1.0
    done = current_iter - start_iter
    if done <= 0:
        return 0.0
    return 1.0 if warmup_iter <= 0 else min(1.0, done / warmup_iter)
