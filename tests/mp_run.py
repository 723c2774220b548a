# Runs one firmware test module under MicroPython and prints one result line per test function.
# Used by tests/conftest.py: micropython -X heapsize=N tests/mp_run.py MODULE [TEST ...]
import gc
import sys


def main():
    module_name = sys.argv[1]
    only = sys.argv[2:]
    module = __import__(module_name)
    names = [n for n in dir(module) if n.startswith("test_") and callable(getattr(module, n))]
    names.sort()
    if only:
        names = [n for n in names if n in only]
    for name in names:
        gc.collect()
        try:
            getattr(module, name)()
        except Exception as err:
            kind = type(err).__name__
            if kind == "Skip" or kind == "Skipped":
                print("MPTEST %s SKIP %s" % (name, err))
            else:
                print("MPTEST %s FAIL %s: %s" % (name, kind, err))
                sys.print_exception(err, sys.stdout)
                print("MPEND %s" % name)
            continue
        except KeyboardInterrupt:
            raise
        print("MPTEST %s PASS" % name)
    print("MPDONE")


main()
