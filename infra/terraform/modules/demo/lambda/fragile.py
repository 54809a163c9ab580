"""A deliberately fragile function: fails FAILURE_RATE of its invocations.

healer's lambda-failure-rate policy repairs it by setting FAILURE_RATE=0.
"""
import os
import random


def handler(event, context):
    rate = float(os.environ.get("FAILURE_RATE", "0"))
    if random.random() < rate:
        raise RuntimeError(f"injected failure (FAILURE_RATE={rate})")
    return {"ok": True}
