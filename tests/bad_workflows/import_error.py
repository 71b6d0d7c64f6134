# expect: import_error.py:2: ModuleNotFoundError: No module named 'not_a_module_hpwf'
import not_a_module_hpwf
