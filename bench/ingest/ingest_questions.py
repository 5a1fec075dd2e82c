# ruff: noqa: E501 - one question per line reads best
"""Questions for the ingest benchmark, each with the corpus files that answer it.

A question is a hit at k when any of the top-k chunks comes from one of its files (paths relative
to the benchmark corpus). Written by hand about /usr/share/common-licenses, the selected man pages
and standard-library modules; the wording avoids file names so lexical overlap does not decide.
"""

from __future__ import annotations

QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    # legal: /usr/share/common-licenses
    ("How is a 'Contribution' defined, as work intentionally submitted to the Licensor for inclusion?",
     ("licenses/Apache-2.0",)),
    ("Which license lets you redistribute with or without modification provided that neither the name of the"
     " University nor the names of its contributors are used to endorse products?", ("licenses/BSD",)),
    ("How can an affirmer waive all copyright and related rights to dedicate a work to the public domain?",
     ("licenses/CC0-1.0",)),
    ("What are Invariant Sections and Cover Texts in a manual's documentation license?",
     ("licenses/GFDL-1.2", "licenses/GFDL-1.3")),
    ("What protects users' legal rights from anti-circumvention laws against breaking technological measures?",
     ("licenses/GPL-3",)),
    ("Must Installation Information be provided when object code is conveyed in a User Product?",
     ("licenses/GPL-3", "licenses/LGPL-3")),
    ("May I make and give away verbatim copies of the Standard Version of the Package?",
     ("licenses/Artistic",)),
    ("Is an executable that links a 'work that uses the Library' with the library a derivative of it?",
     ("licenses/LGPL-2", "licenses/LGPL-2.1")),
    ("Can I create a Larger Work by combining Covered Software with other material?",
     ("licenses/MPL-2.0", "licenses/MPL-1.1")),
    ("Do I have to give a written offer, valid for at least three years, to provide the source code?",
     ("licenses/GPL-1", "licenses/GPL-2", "licenses/GPL-3", "licenses/LGPL-2", "licenses/LGPL-2.1")),
    ("What rights does the Initial Developer grant under the Mozilla Public License version 1.1?",
     ("licenses/MPL-1.1",)),
    ("What is a Combined Work and an Application in the Lesser GPL's additional permissions?",
     ("licenses/LGPL-3",)),
    ("Does a patent license granted by a contributor terminate if I institute patent litigation?",
     ("licenses/Apache-2.0", "licenses/GPL-3", "licenses/MPL-2.0", "licenses/MPL-1.1")),
    # support: man pages
    ("How do I remove directories and their contents recursively?", ("man/man1/rm.1",)),
    ("How do I change the owner and group of a file?", ("man/man1/chown.1",)),
    ("How do I sort lines numerically in reverse order?", ("man/man1/sort.1",)),
    ("How can I build and execute command lines from standard input?", ("man/man1/xargs.1",)),
    ("How do I run a program periodically and show its output fullscreen?", ("man/man1/watch.1",)),
    ("How can I dump a file in octal and other formats?", ("man/man1/od.1", "man/man1/hexdump.1")),
    ("How do I manage locks from shell scripts?", ("man/man1/flock.1",)),
    ("How do I set or retrieve a process's CPU affinity?", ("man/man1/taskset.1",)),
    ("Which processes are using a file or a socket?", ("man/man1/fuser.1",)),
    ("How do I add private key identities to the authentication agent?", ("man/man1/ssh-add.1",)),
    ("How do I list the users who logged in most recently?", ("man/man1/last.1",)),
    ("How do I get or set the I/O scheduling class and priority of a process?", ("man/man1/ionice.1",)),
    ("How do I convert text from one character encoding to another?", ("man/man1/iconv.1", "man/man1/uconv.1")),
    ("How do I remove untracked files from the working tree?", ("man/man1/git-clean.1",)),
    ("How can I change my real name and office phone in the user database?", ("man/man1/chfn.1",)),
    ("How do I force the X server to close the connection of a client by clicking its window?",
     ("man/man1/xkill.1",)),
    ("How do I generate Diffie-Hellman parameters?", ("man/man1/openssl-dhparam.1ssl",)),
    ("How do I detect whether the system is running in a virtual machine or container?",
     ("man/man1/systemd-detect-virt.1",)),
    # code: standard library modules
    ("How do I find the insertion point that keeps a list sorted?", ("stdlib/bisect.py",)),
    ("How are shallow and deep copies of compound objects made?", ("stdlib/copy.py",)),
    ("How is a shell-style filename pattern translated into a regular expression?", ("stdlib/fnmatch.py",)),
    ("How is a keyed-hash message authentication code computed?", ("stdlib/hmac.py",)),
    ("How do I topologically sort a graph of nodes and their predecessors?", ("stdlib/graphlib.py",)),
    ("What does put() do when a bounded first-in first-out queue is full?",
     ("stdlib/queue.py", "stdlib/asyncio/queues.py", "stdlib/multiprocessing/queues.py")),
    ("How do I schedule events to run at a given time with a priority?", ("stdlib/sched.py",)),
    ("How do I measure the execution time of small code snippets?", ("stdlib/timeit.py",)),
    ("How are machine, login and password entries parsed from the user's netrc file?", ("stdlib/netrc.py",)),
    ("How does a crawler check whether robots.txt allows it to fetch a URL?", ("stdlib/urllib/robotparser.py",)),
    ("How do I convert colours between RGB and HSV or HLS?", ("stdlib/colorsys.py",)),
    ("How do I keep a persistent dictionary of pickled objects on disk?", ("stdlib/shelve.py",)),
    ("How are JSON strings with escape sequences decoded?", ("stdlib/json/decoder.py",)),
    ("How is a source file compiled to a byte-code .pyc file?", ("stdlib/py_compile.py",)),
    ("How is ambiguous indentation mixing tabs and spaces detected?", ("stdlib/tabnanny.py",)),
    ("How are Unix-style command line options like -a and --long parsed?", ("stdlib/getopt.py",)),
    ("How do I find the viewer command for a MIME type in mailcap files?", ("stdlib/mailcap.py",)),
    ("What are the abstract base classes for Complex, Real, Rational and Integral numbers?",
     ("stdlib/numbers.py",)),
]  # fmt: skip
