"""Command-line helpers shared by the entry points (layer 0: no project imports).

    add_flag(parser, "--query-per-class", type=int, default=None)   # also accepts --query_per_class

Flags keep paddle_hashnet's underscore spellings as aliases of the dashed names: `add_flag` adds an option
under the names given and, for each dashed long name, its underscore spelling (after all the given
names, duplicates removed). argparse takes `dest` from the first long name, so `--query-per-class` and
`--query_per_class` both set `args.query_per_class`.
"""


def underscore_spellings(names):
    """The option strings of `names` plus the underscore spelling of every dashed long name, in order."""
    spellings = list(names)
    for n in names:
        if n.startswith("--") and "-" in n[2:]:
            spellings.append("--" + n[2:].replace("-", "_"))
    return list(dict.fromkeys(spellings))


def add_flag(parser, *names, **kw):
    """Add an option under its dashed name and its paddle_hashnet underscore spelling."""
    return parser.add_argument(*underscore_spellings(names), **kw)
