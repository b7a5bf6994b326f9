"""A registry for things that come in several kinds (methods in models/methods/, runtimes in
utils/deploy/runtimes.py): a dict of name → item whose `add` refuses a second item of the same name.
A leaf module: no imports."""


class Registry(dict):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def add(self, item):
        """Register `item` under `item.name`; a second one of the same name is a programming error."""
        if item.name in self:
            raise ValueError(f"{self.kind} '{item.name}' is registered twice")
        self[item.name] = item
        return item
