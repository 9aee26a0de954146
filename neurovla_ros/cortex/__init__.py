"""The cortex: slow, semantic planning (camera image + instruction -> goals at 1-10 Hz).

ROS-free core modules: ``language`` (instructions), ``camera`` (projection), ``model`` (the local
pointer VLA), ``scripted`` (colour-segmentation baseline), ``codec`` / ``clients`` /
``testservers`` (NeuroVLA and openpi websocket protocols), ``actions`` (unnormalisation, chunk
ensembling), ``backends`` (the four policies), ``core`` (the worker-thread planning loop),
``data`` / ``train`` (demonstrations and training). ``node`` is the thin ROS 2 node.
"""
