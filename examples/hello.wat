;; A minimal WASI command: prints a greeting, does a little work, then exits 0.
;; Run it with:  wasm-sandbox run --memory 16MiB --fuel 10M --timeout 5s examples/hello.wat
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "Hello from inside the sandbox!\n")
  (func $print (param $ptr i32) (param $len i32)
    ;; one iovec at address 0: {ptr, len}; bytes written go to address 8
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start") (local $i i32)
    (call $print (i32.const 64) (i32.const 31))
    ;; a little work, so the report shows fuel and time being measured
    (loop $spin
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $spin (i32.lt_u (local.get $i) (i32.const 100000))))))
