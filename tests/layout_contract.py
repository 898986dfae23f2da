"""An import-linter contract for a module at the repository's root, such as predict.py:
import-linter's own contracts take packages only. The module may import the standard library
and the listed modules, nothing else (imports inside functions included)."""

import ast
import sys
from pathlib import Path

from importlinter import Contract, ContractCheck, fields, output


class RootModuleContract(Contract):
    module = fields.StringField()
    allowed_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: object, verbose: bool) -> ContractCheck:
        path = Path.cwd() / f"{self.module}.py"
        allowed = {*self.allowed_modules, *sys.stdlib_module_names}
        found = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            found += [(node.lineno, name) for name in names
                      if name.split(".")[0] not in allowed]
        return ContractCheck(kept=not found, metadata={"imports": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line, name in check.metadata["imports"]:
            output.print_error(f"{self.module}.py:{line} imports {name}, which is not one of "
                               f"{', '.join(self.allowed_modules)} or the standard library")
