"""`explain`: what compressing a model would do, batch norm by batch norm, in words."""
from cifar10_prune.pruning import readers
from cifar10_prune.pruning.groups import L, analyze


def explain(model):
    """One line per batch norm of `model` saying whether its channels are prunable, coupled with
    other batch norms (and through which layer), or not prunable and what blocks them; and, where
    a channel with gamma exactly 0 would leave conv / dense readers while the tensor keeps it
    (reader-side, `readers`: a batch norm that follows no conv, a blocked group, a squeeze-excite
    gate), which readers, and how many gammas are 0 now."""
    analysis = analyze(model)
    membership = {bn.name: group for group in analysis.groups for bn, _ in group.members}
    lines = []
    for node in analysis.nodes:
        layer = node.operation
        if isinstance(layer, L.BatchNormalization):
            group = membership.get(layer.name)
            line = _line(analysis, layer, group)
            prunable = group is not None and group.prunable
            if prunable and len(group.members) == 1:
                lines.append(line)  # its group removes every zero channel everywhere
                continue
            side = readers.clause(analysis, layer, prunable)
            if side and not prunable:
                line = line.replace(": not prunable: ", ": not prunable as a group: ", 1)
            lines.append(line + "; " + side if side else line)
    return lines


def _line(analysis, bn, group):
    """What the groups decide for `bn`."""
    if group is None:
        return "%s: not prunable: %s" % (bn.name, analysis.notes[bn.name])
    others = [member.name for member, _ in group.members if member is not bn]
    coupled = "coupled with %s (%s)" % (", ".join(others), "; ".join(group.couplings))
    if group.prunable:
        coupled += "; a channel goes only when its gamma is zero in all of them"
    coupled = coupled if others else "alone"
    if group.prunable:
        reader_names = ", ".join(r.name for r, _ in group.readers) or "nothing"
        return "%s: prunable, %d channels, %s; read by %s" % (bn.name, group.width, coupled,
                                                               reader_names)
    return "%s: not prunable: %s%s" % (bn.name, "; ".join(group.blockers),
                                        "; " + coupled if others else "")
