from kumadp.devtools.bench.cli import main

main()
