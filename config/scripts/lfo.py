# LFO: a sine wave from the clock. Reading absTime makes it cook every frame.
import math

def onSetupParameters(scriptOp):
    page = scriptOp.appendCustomPage('LFO')
    page.appendFloat('Speed', label='Speed (Hz)')[0].default = 0.5
    page.appendFloat('Amp', label='Amplitude')[0].default = 1
    page.appendPulse('Reset', label='Reset phase')

def onPulse(par):
    if par.name == 'Reset':
        me.store('t0', absTime.seconds)

def onCook(scriptOp):
    scriptOp.clear()
    t = absTime.seconds - scriptOp.fetch('t0', 0.0)
    p = scriptOp.par
    scriptOp.appendChan('lfo/wave')[0] = p.Amp * math.sin(2 * math.pi * p.Speed * t)
