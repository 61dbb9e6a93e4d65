"""Research behind the product's learning recipe: experiments, not product code (README.md maps each
function to the product module it became; results and commands are in bench/learning.md)."""
