"""What the project uses to exercise itself, not what a shop imports: the simulated shop
(``simulator``), the demo (``demo``), bursts of good and bad records (``burst``), and
replaying real data onto the input topics (``replay``, ``send``).

A shop's back end needs only ``shopstream``: the event schemas (``shopstream.events``),
the producer (``shopstream.client``) and the settings.
"""
