;; The profile kernel's inner loop in WebAssembly SIMD (src/profile/kernel.js uses it for float32 tensors).
;; Source of the bytes in kernel-wasm.js: after editing, run `node scripts/build-kernel-wasm.mjs`
;; (test/unit/profile.test.ts fails while the two differ).
;;
;; block(rows, width, shifts, out): the row-major float32 block at address 0 ([rows, width]), columns
;; taken four at a time (groups g = 0 .. width/4 - 1; the caller does a remainder in JS). For group g:
;;   d = f64(v) - shift[col]   (shift: f64 per column at `shifts`)
;;   out + 96g: sum d (2 x f64x2), sum d*d (2 x f64x2), min v (f32x4), max v (f32x4)
;; Each lane adds its column's values row by row in the same order as the JS loop, so the sums are the
;; same doubles. A NaN makes its column's sums NaN (pmin/pmax skip it, as JS's `v < lo` does): the caller
;; redoes the whole group in JS.
(module
  (memory (export "memory") 1)
  (func (export "block") (param $rows i32) (param $width i32) (param $shifts i32) (param $out i32)
    (local $stride i32) (local $g i32) (local $groups i32) (local $p i32) (local $end i32) (local $o i32)
    (local $h01 v128) (local $h23 v128)
    (local $a01 v128) (local $a23 v128) (local $b01 v128) (local $b23 v128)
    (local $lo v128) (local $hi v128)
    (local $v v128) (local $d01 v128) (local $d23 v128)
    (local.set $stride (i32.shl (local.get $width) (i32.const 2)))
    (local.set $groups (i32.shr_u (local.get $width) (i32.const 2)))
    (local.set $end (i32.mul (local.get $rows) (local.get $stride)))
    (block $done
      (loop $group
        (br_if $done (i32.ge_u (local.get $g) (local.get $groups)))
        (local.set $h01 (v128.load (i32.add (local.get $shifts) (i32.shl (local.get $g) (i32.const 5)))))
        (local.set $h23 (v128.load offset=16 (i32.add (local.get $shifts) (i32.shl (local.get $g) (i32.const 5)))))
        (local.set $a01 (v128.const f64x2 0 0))
        (local.set $a23 (v128.const f64x2 0 0))
        (local.set $b01 (v128.const f64x2 0 0))
        (local.set $b23 (v128.const f64x2 0 0))
        (local.set $lo (v128.const f32x4 inf inf inf inf))
        (local.set $hi (v128.const f32x4 -inf -inf -inf -inf))
        (local.set $p (i32.shl (local.get $g) (i32.const 4)))
        (block $rows_done
          (loop $row
            (br_if $rows_done (i32.ge_u (local.get $p) (local.get $end)))
            (local.set $v (v128.load (local.get $p)))
            (local.set $lo (f32x4.pmin (local.get $lo) (local.get $v)))
            (local.set $hi (f32x4.pmax (local.get $hi) (local.get $v)))
            (local.set $d01 (f64x2.sub (f64x2.promote_low_f32x4 (local.get $v)) (local.get $h01)))
            (local.set $d23
              (f64x2.sub
                (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))
                (local.get $h23)))
            (local.set $a01 (f64x2.add (local.get $a01) (local.get $d01)))
            (local.set $a23 (f64x2.add (local.get $a23) (local.get $d23)))
            (local.set $b01 (f64x2.add (local.get $b01) (f64x2.mul (local.get $d01) (local.get $d01))))
            (local.set $b23 (f64x2.add (local.get $b23) (f64x2.mul (local.get $d23) (local.get $d23))))
            (local.set $p (i32.add (local.get $p) (local.get $stride)))
            (br $row)))
        (local.set $o (i32.add (local.get $out) (i32.mul (local.get $g) (i32.const 96))))
        (v128.store offset=0 (local.get $o) (local.get $a01))
        (v128.store offset=16 (local.get $o) (local.get $a23))
        (v128.store offset=32 (local.get $o) (local.get $b01))
        (v128.store offset=48 (local.get $o) (local.get $b23))
        (v128.store offset=64 (local.get $o) (local.get $lo))
        (v128.store offset=80 (local.get $o) (local.get $hi))
        (local.set $g (i32.add (local.get $g) (i32.const 1)))
        (br $group))))
)
