# Shared by both stages' tune.sh (sourced, not run): `row PROTOCOL ROW SETTING... GRID` prints the
# `anpyc tune` command of one row, its settings over the stage's pinned ones ($pinned: "k=v ..."),
# into $out/PROTOCOL/ROW; `run_rows JOBS` runs the printed commands, JOBS at a time.
row() {
  local proto=$1 name=$2; shift 2
  local -A value=(); local keys=() params=() p k
  for p in $pinned "$@"; do
    k=${p%%=*}; [[ -v "value[$k]" ]] || keys+=("$k"); value[$k]=${p#*=}
  done
  for k in "${keys[@]}"; do params+=(--param "$k=${value[$k]}"); done
  echo "anpyc tune --protocol $proto --method anpyc ${params[*]} --threads 1 --quiet --out $out/$proto/$name"
}
run_rows() {
  xargs -P "$1" -I{} sh -c '{} --overwrite > /dev/null && echo "done: {}"'
}
