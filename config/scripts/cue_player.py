# Cue player: a /go pulse on input 0 steps through the rows of the table DAT `cues` (name,
# level, fade); the channel `level` fades to the cue's level with mod.easing.smooth.

def onCook(scriptOp):
    scriptOp.clear()
    cues = op('cues')
    go = scriptOp.inputs[0]['go'] if scriptOp.inputs else None
    pressed = go is not None and go[0] > 0
    state = scriptOp.storage
    if pressed and not state.get('held', False):
        state['cue'] = (state.get('cue', 0) % (cues.numRows - 1)) + 1
        state['from'] = state.get('level', 0.0)
        state['start'] = absTime.seconds
    state['held'] = pressed
    cue = state.get('cue', 0)
    level = state.get('level', 0.0)
    if cue:
        target = float(cues[cue, 'level'])
        fade = max(float(cues[cue, 'fade']), 1e-3)
        t = (absTime.seconds - state['start']) / fade
        level = state['from'] + (target - state['from']) * mod.easing.smooth(t)
    state['level'] = level
    scriptOp.appendChan('level')[0] = level
    scriptOp.appendChan('cue')[0] = cue
