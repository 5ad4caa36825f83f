"""What the rooms share: settings, the error tree, names, output, and the deploy pipeline.

The design card fixes six capability packages; the pipeline that composes them (and the few
small things every package needs) had to live somewhere that none of them owns.
"""
