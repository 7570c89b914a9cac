# onReceiveOSC of the OSC In DAT `console` (config/console-osc.toml): a channel that is
# renamed gets its scribble strip lit, by way of the OSC Out DAT `to_console`.


def onReceiveOSC(dat, rowIndex, message, byteData, timeStamp, address, args, peer):
    # /ch/NN/config/name "Vox"
    parts = address.split('/')
    if len(parts) == 5 and parts[1] == 'ch' and parts[3:] == ['config', 'name'] and args:
        op('to_console').sendOSC('/ch/{}/config/color'.format(parts[2]), [3 if args[0] else 0])
