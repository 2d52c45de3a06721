"""Building blocks of the embedded demo world: face identities, camera animation, fake making.

`python -m preprocess.make_demo_data` puts them together into a DFDC-layout dataset.
"""
