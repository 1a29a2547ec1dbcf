;; Grows its memory one 1 MiB step at a time until refused, then traps:
;;   wasm-sandbox run --memory 16MiB examples/memory_hog.wat   -> exit 120, MemoryLimitExceeded
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))
