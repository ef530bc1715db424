"""The Python program of the end-to-end crash tests: logs, then raises a KeyError deep in a
call, as a service does on an order it does not know. Run by Debian's python3 in the image
vigil.test/crashers:1 (e2e/tools/install.sh assembles the interpreter and its libraries)."""

import sys
import time

PRICES = {"book": 12, "lamp": 30}


def price_of(item):
    return PRICES[item]


def total(order):
    return sum(price_of(item) for item in order)


print("shipping: starting", flush=True)
print("shipping: pricing order 42", flush=True)
time.sleep(2)
print(total(["book", "teapot"]), flush=True)
sys.exit(0)
