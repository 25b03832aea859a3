;; An RPC-shaped example guest: a tiny bag-of-words scorer, callable two ways.
;;
;; Numeric ABI:  score(a: f64, b: f64) -> f64   logistic(1.5 * a - 2 * b + 0.25)
;;               add(a: i32, b: i32) -> i32
;;               hold(ms: i32) -> i32     waits ms milliseconds (WASI clock), like a model call
;;                                        doing I/O; returns the WASI errno (0)
;; Bytes ABI:    alloc(len) -> ptr, classify(ptr, len) -> (out_ptr << 32 | out_len)
;;               answers "positive" or "negative" from counts of the letters of "good" vs "bad".
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (export "heap") (mut i32) (i32.const 4096))  ;; exported: reset in place
  (data (i32.const 0) "positive")
  (data (i32.const 16) "negative")

  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))

  (func $exp (param $x f64) (result f64)
    ;; e^x by squaring a 12-term series of e^(x/64): plenty for an example.
    (local $y f64) (local $term f64) (local $i i32) (local $sum f64)
    (local.set $y (f64.div (local.get $x) (f64.const 64)))
    (local.set $term (f64.const 1)) (local.set $sum (f64.const 1)) (local.set $i (i32.const 1))
    (block $done (loop $series
      (br_if $done (i32.gt_u (local.get $i) (i32.const 12)))
      (local.set $term (f64.div (f64.mul (local.get $term) (local.get $y)) (f64.convert_i32_u (local.get $i))))
      (local.set $sum (f64.add (local.get $sum) (local.get $term)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $series)))
    (local.set $i (i32.const 0))
    (block $done2 (loop $square
      (br_if $done2 (i32.ge_u (local.get $i) (i32.const 6)))
      (local.set $sum (f64.mul (local.get $sum) (local.get $sum)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $square)))
    (local.get $sum))

  (func (export "score") (param $a f64) (param $b f64) (result f64)
    (f64.div (f64.const 1)
      (f64.add (f64.const 1)
        (call $exp (f64.neg (f64.add (f64.sub (f64.mul (f64.const 1.5) (local.get $a))
                                              (f64.mul (f64.const 2) (local.get $b)))
                                     (f64.const 0.25)))))))

  (func (export "hold") (param $ms i32) (result i32)
    ;; One relative clock subscription at 1024 (48 bytes), its event at 1088, the count at 1120.
    (i64.store (i32.const 1024) (i64.const 0))                    ;; userdata
    (i32.store8 (i32.const 1032) (i32.const 0))                   ;; tag: clock
    (i32.store (i32.const 1040) (i32.const 1))                    ;; clock id: monotonic
    (i64.store (i32.const 1048) (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (i64.store (i32.const 1056) (i64.const 0))                    ;; precision
    (i32.store16 (i32.const 1064) (i32.const 0))                  ;; flags: relative
    (call $poll_oneoff (i32.const 1024) (i32.const 1088) (i32.const 1) (i32.const 1120)))

  (func (export "alloc") (param $len i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $len)))
    (local.get $p))

  (func (export "classify") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $c i32) (local $good i32) (local $bad i32)
    (block $done (loop $scan
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (local.set $c (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
      (if (i32.or (i32.eq (local.get $c) (i32.const 103)) (i32.eq (local.get $c) (i32.const 111)))
        (then (local.set $good (i32.add (local.get $good) (i32.const 1)))))
      (if (i32.or (i32.eq (local.get $c) (i32.const 98)) (i32.eq (local.get $c) (i32.const 97)))
        (then (local.set $bad (i32.add (local.get $bad) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $scan)))
    (if (result i64) (i32.ge_s (local.get $good) (local.get $bad))
      (then (i64.const 8))                                   ;; ptr 0, len 8: "positive"
      (else (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 8)))))
)
