# expect: not_utf8.py:3: not valid UTF-8
import hpwf
name = "ÿþ"
